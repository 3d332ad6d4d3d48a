"""fl-crb: federated edge emulation for DRL task offloading in cloud-edge-terminal systems.

Data flow, one folder each: `topology` (the deployment file) → `mec` (the slotted
simulator) → `learn` (policies, the central trajectory pool, edge learners).
"""

__version__ = "0.1.0"
