from choir_clients.demo.simulated import SimulatedDirector, SimulatedSinger  # noqa: F401
