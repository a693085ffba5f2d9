"""The HTTP port: the runner API, socket.io notifications, the admin API, upload limits."""
