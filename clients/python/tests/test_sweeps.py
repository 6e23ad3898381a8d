"""Sweeps and resources through the SDK: a grid sweep run to its end and paged, a bad sweep's
problems named per member, resources checked by the job type's rules, and a sweep cancelled
through the async client."""

import pytest

import hpcsera


def test_a_grid_sweep_runs_every_member_in_index_order(client, site):
    sweep = client.submit_sweep(site, "greet", {"who": "sweep"}, grid={"n": [1, 2, 3]})
    assert (sweep["members"], sweep["jobType"]) == (3, "greet")
    done = client.wait_sweep(sweep["id"], timeout=120, raise_on_failure=True)
    assert done["counts"]["byStatus"]["completed"] == 3
    assert done["counts"]["unsuccessful"] == 0
    members = list(client.iter_sweep_jobs(sweep["id"], page_size=2))
    assert [m["sweepIndex"] for m in members] == [0, 1, 2]
    assert [m["parameters"]["n"] for m in members] == [1, 2, 3]
    assert all(m["sweep"] == sweep["id"] and m["parameters"]["who"] == "sweep" for m in members)
    assert client.read_output(members[2]["id"]).data == b"Hello, sweep\n" * 3
    assert client.sweep_jobs(sweep["id"], "failed")["jobs"] == []
    assert sweep["id"] in [s["id"] for s in client.list_sweeps(site=site)["sweeps"]]
    events = client.sweep_events(sweep["id"])
    assert {e["jobId"] for e in events} == {m["id"] for m in members}
    assert client.delete_sweep(sweep["id"]) is True
    with pytest.raises(hpcsera.NotFound):
        client.get_sweep(sweep["id"])


def test_a_bad_sweep_names_its_members_and_resources_follow_the_rules(client, site):
    with pytest.raises(hpcsera.Invalid) as e:
        client.submit_sweep(site, "greet", parameter_sets=[{"n": 1}, {"n": 99}])
    assert e.value.field("parameterSets[1].n"), e.value.fields
    # `greet` lets clients set no resources: the server names the one asked for.
    with pytest.raises(hpcsera.Invalid) as e:
        client.submit(site, "greet", resources={"node_count": 2})
    assert e.value.field("resources.node_count"), e.value.fields
    with pytest.raises(ValueError):
        client.submit_sweep(site, "noop")


async def test_the_async_client_cancels_a_sweep(aclient, site):
    sweep = await aclient.submit_sweep(site, "sleep", parameter_sets=[{"seconds": 300}, {"seconds": 300}])
    result = await aclient.cancel_sweep(sweep["id"])
    assert isinstance(result, dict)
    done = await aclient.wait_sweep(sweep["id"], timeout=120)
    assert done["counts"]["byStatus"]["cancelled"] == 2
    with pytest.raises(hpcsera.SweepFailed):
        await aclient.wait_sweep(sweep["id"], raise_on_failure=True)
    ids = [m["id"] async for m in aclient.iter_sweep_jobs(sweep["id"])]
    assert len(ids) == 2
