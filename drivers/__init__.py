"""Poll-mode drivers, one family per device kind, each behind a backend-neutral interface.

- :mod:`labrig.drivers.block` -- the ``BlockDevice`` interface and its backend registry
- :mod:`labrig.drivers.nvme`  -- the NVMe driver (controller init, queue pairs, PRPs, commands)
"""
