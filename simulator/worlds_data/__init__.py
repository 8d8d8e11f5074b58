"""The named world files shipped with the simulator (read by :mod:`simulator.worlds`)."""
