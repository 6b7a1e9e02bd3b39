"""The replica class itself, without Ray: what ``check_health`` reports, what ``reconfigure``
accepts, and that a replica refuses a registry whose bytes differ from the deployment's pin."""

from __future__ import annotations

import pytest

import modelserve as ms
from modelserve import EngineUnavailableError, InvalidInputError, PinMismatchError
from modelserve.ray import ModelReplica, pin


@pytest.fixture
def registry(tmp_path, detector_path):
    reg = ms.Registry(tmp_path / "registry")
    reg.register("det", detector_path, alias="prod")
    return reg


@pytest.fixture
def replica(registry):
    r = ModelReplica(pin("det@prod", registry=registry.root), "det", {"max_concurrent_batches": 1}, {})
    yield r
    r.__del__()


def test_healthy_until_the_engine_keeps_failing(replica, photo):
    jpeg = photo("bus.jpg").read_bytes()
    replica.check_health()
    assert replica.predict([jpeg])[0]["detections"]

    def broken(feeds):
        raise RuntimeError("the device fell off the bus")

    working, replica.predictor.engine.run = replica.predictor.engine.run, broken
    for n in range(3):
        with pytest.raises(Exception, match="fell off"):
            replica.predict([jpeg])
        if n < 2:
            replica.check_health()  # one or two failures: still healthy (a bad batch is not a bad replica)
    with pytest.raises(EngineUnavailableError, match="failed its last 3 batches"):
        replica.check_health()
    replica.predictor.engine.run = working
    assert replica.predict([jpeg])[0]["detections"]
    replica.check_health()  # a good batch clears it


def test_unhealthy_once_the_batcher_is_closed(replica):
    replica.predictor.batcher.close()
    with pytest.raises(EngineUnavailableError, match="closed"):
        replica.check_health()


def test_reconfigure_takes_only_live_batcher_settings(replica):
    replica.reconfigure({"batching": {"max_batch_size": 3, "max_delay_ms": 7}})
    assert replica.describe()["batching"]["max_batch_size"] == 3
    assert replica.predictor.batcher.config.max_delay_ms == 7
    with pytest.raises(InvalidInputError, match="max_concurrent_batches"):
        replica.reconfigure({"batching": {"max_concurrent_batches": 4}})
    replica.reconfigure({})  # nothing to change


def test_a_replica_refuses_other_bytes_than_the_pin(tmp_path, registry, detector_path, fixed_detector_path):
    pinned = pin("det@prod", registry=registry.root)
    other = ms.Registry(tmp_path / "other")
    other.register("det", fixed_detector_path)  # det:1 there holds other bytes
    moved = type(pinned)(pinned.name, pinned.version, pinned.digest, registry=str(other.root))
    with pytest.raises(PinMismatchError, match="every node must see the same registry"):
        ModelReplica(moved, "det", {}, {})
