"""``layerforge init --from PATH``: read a repository of Dockerfiles, compose files and
requirements files, and write a manifest plus a migration report that accounts for every
instruction. It reads foreign files and writes text; it never builds or locks."""
