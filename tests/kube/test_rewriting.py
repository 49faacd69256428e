"""How cluster-shaped command lines are made to work on one machine (pure functions, no cluster)."""

from __future__ import annotations

from testbed.kube.rewriting import CLUSTER_DNS, Rewriter, expand_vars, port_rules


def test_var_expansion_follows_kubernetes_rules():
    env = {"POD_NAME": "w-1", "NS": "dask"}
    assert expand_vars("--name $(POD_NAME)", env) == "--name w-1"
    assert expand_vars("$(MISSING)/x", env) == "$(MISSING)/x"  # unknown references stay verbatim
    assert expand_vars("$$(POD_NAME)", env) == "$(POD_NAME)"  # $$ escapes
    assert expand_vars("$(NS).$(POD_NAME)", env) == "dask.w-1"


def test_declared_ports_are_rewritten_where_they_are_ports():
    rw = port_rules({8786: 40001, 8787: 40002})
    assert rw("8786") == "40001"
    assert rw("--port=8786") == "--port=40001"
    assert rw(":8787") == ":40002"
    assert rw("tcp://0.0.0.0:8786") == "tcp://0.0.0.0:40001"
    assert rw("http://localhost:8787/health") == "http://localhost:40002/health"
    assert rw("87860") == "87860" and rw("x8786") == "x8786" and rw("--nthreads") == "--nthreads"


def test_rewriting_is_one_pass():
    rw = Rewriter()
    rw.path("/opt/dask-adaptive", "/tmp/pods/p1/volumes/preload")
    rw.path("/tmp", "/tmp/pods/p1/volumes/tmp")
    # The /tmp rule must not rewrite the folder the first rule produced.
    assert rw("/opt/dask-adaptive") == "/tmp/pods/p1/volumes/preload"
    assert rw("/tmp:/opt/dask-adaptive/x") == "/tmp/pods/p1/volumes/tmp:/tmp/pods/p1/volumes/preload/x"
    assert rw("/tmpfoo") == "/tmpfoo"  # only whole path components


def test_unresolved_cluster_dns_names_are_detected():
    assert CLUSTER_DNS.search("tcp://dask-scheduler.adask-dev.svc.cluster.local:8786")
    assert CLUSTER_DNS.search("http://api.ns.svc/health")
    assert not CLUSTER_DNS.search("tcp://127.0.0.1:40001")
    assert not CLUSTER_DNS.search("--name dask-worker-abc")
