"""choir-demo, and the simulated peers and network it and the tests use."""
