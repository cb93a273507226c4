"""A fleet on a Ray cluster given by --address: two nodes simulated on this machine (a head and a second node
with one CPU each, started and stopped by the test with Ray's own ``cluster_utils``), driven by the CLI in another
process, as a user on a login node would."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_fleet_support import make_logs, pipeline, write_spec

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.mark.slow
def test_the_cli_runs_a_fleet_on_a_cluster_by_address(tmp_path, two_nodes):
    logs = make_logs(tmp_path, broken=False)
    spec = write_spec(logs, pipeline(), logs=["street*/log"])
    out = tmp_path / "out"
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    done = subprocess.run([sys.executable, "-m", "simrecon", "fleet", "run", str(spec), "-o", str(out),
                           "--address", two_nodes.address], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((out / "fleet.json").read_text())
    assert manifest["executor"] == f"ray ({two_nodes.address}, 2 node(s))"
    assert [[s["status"] for s in log["stages"]] for log in manifest["logs"]] == [["done"] * 4] * 2
    nodes = {s["node"] for log in manifest["logs"] for s in log["stages"]}
    assert len(nodes) == 2, f"the stages ran on both nodes: {nodes}"
