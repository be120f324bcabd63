from gateway.repo import metadata
from mcloud_common.migrations import run_env

run_env(metadata)
