"""choir-runner: PeerTube's remote-runner protocol and ffmpeg. Imports nothing of the
rehearsal clients, so a machine that only runs jobs needs no PortAudio."""
