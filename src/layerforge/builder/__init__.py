"""Building a plan's nodes into the local store.

:mod:`~layerforge.builder.executor` runs the plan's steps (in parallel where the graph allows)
with one :class:`~layerforge.builder.context.BuildContext`; per node it takes the OS base
(:mod:`layerforge.sources`), the system layer (:mod:`layerforge.sandbox.system`), the
dependency layers (:mod:`~layerforge.builder.deps`, reusing layers through
:mod:`~layerforge.builder.layercache` and :mod:`~layerforge.builder.distcache`), the runtime
layer and the app layer, assembles the image (:mod:`layerforge.oci.image`), checks its budget
(:mod:`~layerforge.builder.budgets`) and verifies it before tagging. The disk preflight
(:mod:`~layerforge.builder.disk`) refuses a build that cannot fit before anything is written.
"""
