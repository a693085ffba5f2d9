"""Programs that talk to the daemon: simulated peers and the demo (singer, director,
admin and runner programs come later)."""
