"""The lock: a project's manifest resolved with uv into ``layerforge.lock``.

The data flows down this list; each module imports only the ones below it:

- :mod:`~layerforge.lock.resolve`: ``layerforge lock``; every node's requirements, then
  (through :mod:`~layerforge.lock.runtime`) its runtime groups, into a :class:`Lock`.
- :mod:`~layerforge.lock.runtime`: runtime groups, resolved on top of everything baked.
- :mod:`~layerforge.lock.inputs`: what an entry was resolved from, and whether it is stale
  (pure; ``lock --check`` and ``plan`` use it).
- :mod:`~layerforge.lock.uv`: the one seam to uv (its ``pip compile`` and ``pip install``
  command lines, the files it reads and writes).
- :mod:`~layerforge.lock.lockfile`: the ``layerforge.lock`` file format.
"""
