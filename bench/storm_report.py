#!/usr/bin/python3
"""Summarises one bench/storm.sh scenario from the load shards' --events files.

Prints a short text report and writes the same figures as one JSON line to WORK/summary.json.
Times are milliseconds after t0 (the kill, the SIGTERM, or the new gateway's start).
"""
import argparse
import collections
import glob
import json


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def max_over_fair(counts, weights):
    c = {k: v for k, v in counts.items() if v is not None}
    tot = sum(c.values())
    wsum = sum(weights[k] for k in c)
    if not tot or not wsum:
        return None
    return max(v / (tot * weights[k] / wsum) for k, v in c.items())


def main():
    a = argparse.ArgumentParser()
    for opt in ("scenario", "work", "t99", "t100", "t-spread", "victim", "before", "after",
                "weights", "weights-before", "cpu", "jitter", "loadavg"):
        a.add_argument("--" + opt, default="")
    for opt in ("shards", "clients", "t0", "t-end", "t-stop", "killed-count", "hz"):
        a.add_argument("--" + opt, type=int, default=0)
    o = a.parse_args()

    t0 = o.t0
    lost, logins, failed = [], [], []
    for path in sorted(glob.glob(f"{o.work}/events*.jsonl")):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    e = json.loads(line)
                except ValueError:
                    continue  # a line cut by the interrupt
                kind = e.get("event")
                if kind == "lost":
                    lost.append(e)
                elif kind == "login":
                    logins.append(e)
                elif kind == "attempt_failed":
                    failed.append(e)

    # Per client, in time order: who lost a session at or after t0, when it got one back.
    by_client = collections.defaultdict(list)
    for e in lost + logins:
        by_client[e["client"]].append(e)
    rehome_ms, gap_ms, stuck, lost_clients, in_transit = [], [], 0, 0, 0
    for c, evs in by_client.items():
        evs.sort(key=lambda e: (e["t_ms"], 0 if e["event"] == "lost" else 1))
        first_loss = next((e for e in evs if e["event"] == "lost" and e["t_ms"] >= t0), None)
        if first_loss is None:
            continue
        lost_clients += 1
        back = next((e for e in evs if e["event"] == "login" and e["t_ms"] >= first_loss["t_ms"]),
                    None)
        # Stuck: its last session event when the load stopped is a loss more than 5 s old (a
        # redirect's hint is at most 2 s by default); a younger loss is a client in transit.
        stop = o.t_stop or (o.t_end + 60000)
        last = [e for e in evs if e["t_ms"] <= stop]
        if last and last[-1]["event"] == "lost":
            if last[-1]["t_ms"] < stop - 5000:
                stuck += 1
            else:
                in_transit += 1
        if back is not None:
            rehome_ms.append(back["t_ms"] - t0)
            gap_ms.append(back["t_ms"] - first_loss["t_ms"])

    # From the events (exact, where the status-file polling is only good to ~300 ms): the moment
    # the k-th lost client was back, for 99% and 100% of all clients logged in.
    back_sorted = sorted(rehome_ms)
    missing_allowed = o.clients // 100
    k99 = lost_clients - missing_allowed
    t99_events = 0 if k99 <= 0 else (back_sorted[k99 - 1] if len(back_sorted) >= k99 else None)
    t100_events = (back_sorted[-1] if back_sorted else 0) if stuck == 0 and in_transit == 0 else None

    lost_after = [e for e in lost if e["t_ms"] >= t0]
    reasons = collections.Counter(e.get("reason", "?") for e in lost_after)
    causes = collections.Counter(e.get("cause", "?") for e in failed if e["t_ms"] >= t0)
    per_gw_sec = collections.defaultdict(collections.Counter)
    for e in logins:
        if e["t_ms"] >= t0:
            per_gw_sec[e.get("gateway", "?")][(e["t_ms"] - t0) // 1000] += 1
    login_rates = {
        g: {"total": sum(s.values()), "peak_per_s": max(s.values()),
            "busiest_second": max(s, key=s.get)}
        for g, s in sorted(per_gw_sec.items())
    }

    weights = json.loads(o.weights) if o.weights else {}
    before = json.loads(o.before) if o.before else {}
    after = json.loads(o.after) if o.after else {}
    w_before = json.loads(o.weights_before) if o.weights_before else weights
    window_s = max(0.001, (o.t_end - t0) / 1000.0)
    cpu = json.loads(o.cpu) if o.cpu else {}
    cpu_s = {k: v / o.hz for k, v in cpu.items()} if o.hz else {}

    def num(s):
        return int(s) if s not in ("", None) else None

    summary = {
        "scenario": o.scenario,
        "clients": o.clients,
        "shards": o.shards,
        "client_jitter": o.jitter,
        "loadavg_at_end": o.loadavg,
        "victim": o.victim or None,
        "victim_sessions": o.killed_count or None,
        "t99_ms": t99_events,
        "t100_ms": t100_events,
        "t99_polled_ms": num(o.t99),
        "t100_polled_ms": num(o.t100),
        "t_spread_ms": num(o.t_spread),
        "watch_ms": o.t_end - t0,
        "clients_lost": lost_clients,
        "loss_reasons": dict(reasons),
        "stuck": stuck,
        "in_transit_at_stop": in_transit,
        "rehome_ms": {"p50": pct(rehome_ms, 50), "p99": pct(rehome_ms, 99),
                      "max": max(rehome_ms) if rehome_ms else None},
        "loss_to_login_ms": {"p50": pct(gap_ms, 50), "p99": pct(gap_ms, 99),
                             "max": max(gap_ms) if gap_ms else None},
        "failed_attempts": dict(causes),
        "http_503": causes.get("http_503", 0),
        "logins_after_t0": login_rates,
        "cpu_seconds": {k: round(v, 2) for k, v in cpu_s.items()},
        "cpu_share_of_one_core": {k: round(v / window_s, 2) for k, v in cpu_s.items()},
        "sessions_before": before,
        "sessions_after": after,
        "max_over_fair_before": max_over_fair(before, w_before),
        "max_over_fair_after": max_over_fair(after, weights),
    }
    with open(f"{o.work}/summary.json", "w") as f:
        f.write(json.dumps(summary) + "\n")

    def fmt(v):
        return "-" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    s = summary
    print(f"== {s['scenario']}: {s['clients']} clients, {s['shards']} load processes, "
          f"client jitter {s['client_jitter']}, load average {s['loadavg_at_end']}")
    if s["victim"]:
        print(f"killed {s['victim']} holding {s['victim_sessions']} sessions")
    print(f"99% logged in at +{fmt(s['t99_ms'])} ms, 100% at +{fmt(s['t100_ms'])} ms (events; "
          f"status files polled: +{fmt(s['t99_polled_ms'])} / +{fmt(s['t100_polled_ms'])} ms)"
          + (f", spread goal at +{fmt(s['t_spread_ms'])} ms" if s["scenario"] == "join" else ""))
    print(f"clients that lost a session: {s['clients_lost']} ({dict(reasons)}), stuck {stuck}, "
          f"in transit when the load stopped {in_transit}")
    print(f"re-login after t0: p50 {fmt(s['rehome_ms']['p50'])} ms, p99 "
          f"{fmt(s['rehome_ms']['p99'])} ms, max {fmt(s['rehome_ms']['max'])} ms; "
          f"loss->login p50 {fmt(s['loss_to_login_ms']['p50'])} ms, max "
          f"{fmt(s['loss_to_login_ms']['max'])} ms")
    print(f"failed attempts by cause: {dict(causes) or 'none'} (503s: {s['http_503']})")
    for g, r in login_rates.items():
        print(f"  logins at {g}: {r['total']}, peak {r['peak_per_s']}/s (second {r['busiest_second']})")
    print("CPU over the watch ({:.1f} s): {}".format(
        window_s, ", ".join(f"{k} {v:.2f} s ({v / window_s:.0%} of a core)" for k, v in cpu_s.items())))
    print(f"sessions before {before} max/fair {fmt(s['max_over_fair_before'])}; after {after} "
          f"max/fair {fmt(s['max_over_fair_after'])}")


if __name__ == "__main__":
    main()
