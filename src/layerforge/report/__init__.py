"""Reports that only read: image sizes and what is shared across the fleet, layer listings,
waste (files a later layer deletes or shadows), build timings, and the HTML page.

Nothing here writes the store or decides a build: budgets and the disk preflight live in
:mod:`layerforge.builder`, garbage collection in :mod:`layerforge.gc`.
"""
