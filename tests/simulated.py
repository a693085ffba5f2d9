from choir_clients.simulated import SimulatedDirector, SimulatedSinger  # noqa: F401
