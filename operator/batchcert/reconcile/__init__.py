"""Use cases: gather what Azure has, decide with the pure core, act, and report as status."""
