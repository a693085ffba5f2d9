"""The rehearsal wire of online-choir 1.1.3: header, chunks, codec, state machines, mixer."""
