"""Running things inside images: the bubblewrap runner and its seccomp filter, system steps
(apt and run statements) captured as a layer by diffing the root before and after, bytecode
compiled by the image's own Python, and the verify statements of one image.

Every run goes through :func:`layerforge.sandbox.runner.run`; see docs/sandbox.md.
"""
