"""Virtual-time simulation of the discovery code: ``p2p simulate`` (see docs/simulation.md)."""

from p2p.sim.simulator import (
    MAX_NODES,
    SimConfig,
    SimProgress,
    Simulation,
    closest_share,
    node_address,
    run_simulation,
)

__all__ = ["MAX_NODES", "SimConfig", "SimProgress", "Simulation", "closest_share", "node_address", "run_simulation"]
