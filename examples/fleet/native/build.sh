#!/bin/sh
# Run inside the sandbox by the cpu base's run step (this directory is mounted at /context).
# Builds libfastmath.so from source into /usr/local/lib, then the _fastmath CPython
# extension, linked against it, into the image's venv.
set -eu
work=/tmp/fastmath-build  # a fixed path: the build is reproducible
mkdir -p "$work"
cd "$work"
gcc -O2 -fPIC -shared -Wl,-soname,libfastmath.so.1 -o libfastmath.so.1 /context/fastmath.c
install -m 0755 libfastmath.so.1 /usr/local/lib/libfastmath.so.1
ln -sf libfastmath.so.1 /usr/local/lib/libfastmath.so
install -m 0644 /context/fastmath.h /usr/local/include/fastmath.h
ldconfig
py=$(/opt/venv/bin/python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
site=/opt/venv/lib/python$py/site-packages
ext=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
gcc -O2 -fPIC -shared -I/usr/include/python$py -I/usr/local/include \
    -o "$site/_fastmath$ext" /context/_fastmath.c -L/usr/local/lib -lfastmath
cd /
rm -rf "$work"
