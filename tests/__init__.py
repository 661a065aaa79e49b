"""ShadowMesh tests. A package so that `tests.support` wins over the unrelated top-level `tests` package
that pymultihash (a dependency of Ape) installs into site-packages."""
