"""OCI images without a project: references, registries, blobs, layers, manifests.

A leaf (like go-containerregistry's ``pkg/v1``): it imports only errors, events, sizes, proc and
fsutil, never a manifest, lock or plan (import-linter's ``oci-leaf`` contract). ``layout`` is
the local store, ``tarball``/``compress``/``write`` turn file entries into layer blobs in one
pass, ``image`` assembles configs and manifests, ``unpack`` applies layers to a root filesystem,
``registry``/``auth``/``config``/``transfer``/``pull``/``push`` speak the distribution API, and
``archive``/``importer`` move images between stores and tarballs.
"""
