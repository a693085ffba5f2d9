"""PeerTube's remote-runner protocol: jobs, their payloads and plans, socket.io, tokens."""
