"""expctl's tests, by kind: ``unit/`` (the pure core, table-driven, with the fakes), ``contract/`` (one class of
tests every backend passes), ``integration/`` (real git, real ``expctl`` processes, a real ``mlflow server`` and
real Slurm clusters), ``kube/`` (a real kube-apiserver). What they share is in ``support/``; fixtures are in the
``conftest.py`` files. A test module imports ``tests.support`` and ``tests.contract`` only — never another test
module or a conftest (``unit/test_test_layout.py`` checks it)."""
