"""Advise stage: measure options on this machine (``taskfit profile``) and rank them for a workload
(``taskfit advise``) by estimated training time, memory, serving latency, cost and expected quality."""

from taskfit.advise.advisor import Advice, Constraints, Option, advise
from taskfit.advise.estimate import Workload, estimate_option
from taskfit.advise.profile import ProfileSettings, default_profile_path, load_profile, run_profile
from taskfit.advise.select import select_profile

__all__ = ["Advice", "Constraints", "Option", "ProfileSettings", "Workload", "advise", "default_profile_path",
           "estimate_option", "load_profile", "run_profile", "select_profile"]
