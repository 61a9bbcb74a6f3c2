"""OS sources of root bases: materialize them as layers in the store, find their Python.

One module per kind (debootstrap, rootfs, ocilayout, registry) on top of :mod:`.base`; the
kinds are registered in :data:`layerforge.sources.materialize.MATERIALIZERS`.
"""
