"""The rehearsal ports: the room, its protocols, the recorder and its repair at start."""
