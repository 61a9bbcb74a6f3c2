"""Garbage collection: what the store and the cache directory hold that nothing needs.

:mod:`~layerforge.gc.storegc` removes the store's images, blobs and bookkeeping no tag reaches
(under the store's exclusive lock); :mod:`~layerforge.gc.cachegc` removes cache entries no
project and no store uses, by the areas :mod:`layerforge.cachedir` declares.
"""
