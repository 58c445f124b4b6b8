import os
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
import time, cProfile, pstats
from experiments.crn import train
from vision_jax.utils import load_config
cfg = load_config("crn", "smoke")
import shutil; shutil.rmtree("/tmp/crn_prof", ignore_errors=True)
cProfile.run('train.run(cfg, "/tmp/crn_prof", progress=False)', "/tmp/crn_prof.stats")
p = pstats.Stats("/tmp/crn_prof.stats"); p.sort_stats("cumulative").print_stats(40)
