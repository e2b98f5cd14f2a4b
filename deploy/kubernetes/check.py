#!/usr/bin/env python3
"""Checks on rendered manifests that a schema cannot express.

usage: check.py RENDERED.yaml [--control-plane BIN] [--data-plane BIN]

- every AIPROXY_* variable a container sets is one the binary knows (KNOWN_VARS in the
  sources), and secrets (master key, node token, database URL) arrive only through `_FILE`
  variables whose paths lie under a mounted Secret volume that carries that file;
- every container has readiness and liveness probes on a declared port, requests and a memory
  limit, and runs non-root with a read-only root filesystem (ours) and no privilege escalation;
- Services, PodDisruptionBudgets and the HorizontalPodAutoscaler point at real workloads;
- only data-plane pods may reach the control plane's gRPC port;
- the data plane's termination grace period outlasts its drain timeout plus the preStop pause;
- with the binaries given, each container's environment (secret files replaced by throwaway
  values) passes the binary's own `check-config`.
Exits 1 listing every failure.
"""

import os
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET_VARS = {"AIPROXY_MASTER_KEY", "AIPROXY_OLD_MASTER_KEYS", "AIPROXY_NODE_TOKEN",
               "AIPROXY_OLD_NODE_TOKENS", "AIPROXY_DATABASE_URL", "AIPROXY_REDIS_URL"}
OURS = {"aiproxy-control-plane": "control-plane", "aiproxy-data-plane": "data-plane"}

failures = []


def fail(where, msg):
    failures.append(f"{where}: {msg}")


def known_vars(crate):
    src = open(os.path.join(ROOT, crate, "src", "config.rs")).read()
    block = re.search(r"KNOWN_VARS: &\[&str\] = &\[(.*?)\];", src, re.S)
    if not block:
        sys.exit(f"cannot find KNOWN_VARS in {crate}/src/config.rs")
    return set(re.findall(r'"(AIPROXY_[A-Z0-9_]+)"', block.group(1)))


def labels_match(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def main():
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    rendered = args[0]
    bins = {}
    for flag, name in (("--control-plane", "control-plane"), ("--data-plane", "data-plane")):
        if flag in args:
            bins[name] = args[args.index(flag) + 1]
    docs = [d for d in yaml.safe_load_all(open(rendered)) if d]
    known = {"control-plane": known_vars("control-plane"), "data-plane": known_vars("data-plane")}
    by_kind = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    secrets = {s["metadata"]["name"]: s for s in by_kind.get("Secret", [])}

    for w in workloads:
        name = w["metadata"]["name"]
        pod = w["spec"]["template"]
        if not labels_match(w["spec"]["selector"]["matchLabels"], pod["metadata"]["labels"]):
            fail(name, "selector does not match the pod template's labels")
        spec = pod["spec"]
        psc = spec.get("securityContext", {})
        if not psc.get("runAsNonRoot"):
            fail(name, "pod does not set runAsNonRoot")
        if spec.get("automountServiceAccountToken") is not False:
            fail(name, "service account token is mounted")
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for c in spec["containers"]:
            where = f"{name}/{c['name']}"
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("readinessProbe", "livenessProbe") if name in OURS else ("readinessProbe",):
                p = c.get(probe)
                if not p:
                    fail(where, f"no {probe}")
                elif "httpGet" in p and p["httpGet"]["port"] not in ports:
                    fail(where, f"{probe} targets undeclared port {p['httpGet']['port']}")
            res = c.get("resources", {})
            if not res.get("requests", {}).get("cpu") or not res.get("requests", {}).get("memory"):
                fail(where, "no cpu/memory requests")
            if not res.get("limits", {}).get("memory"):
                fail(where, "no memory limit")
            csc = c.get("securityContext", {})
            if csc.get("allowPrivilegeEscalation") is not False:
                fail(where, "allowPrivilegeEscalation is not false")
            if "ALL" not in csc.get("capabilities", {}).get("drop", []):
                fail(where, "capabilities not dropped")
            if name in OURS:
                if not csc.get("readOnlyRootFilesystem"):
                    fail(where, "root filesystem is writable")
                check_env(where, c, volumes, secrets, known[OURS[name]], bins.get(OURS[name]), OURS[name])
        if name == "aiproxy-data-plane":
            check_drain(name, spec)

    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in workloads]
    for kind in ("Service", "PodDisruptionBudget"):
        for o in by_kind.get(kind, []):
            sel = o["spec"]["selector"]
            sel = sel.get("matchLabels", sel) if kind == "PodDisruptionBudget" else sel
            if not any(labels_match(sel, l) for l in pod_labels):
                fail(f"{kind}/{o['metadata']['name']}", "selector matches no workload")
    deployments = {d["metadata"]["name"] for d in by_kind.get("Deployment", [])}
    hpas = by_kind.get("HorizontalPodAutoscaler", [])
    if "aiproxy-data-plane" in deployments and not hpas:
        fail("data plane", "no HorizontalPodAutoscaler")
    for h in hpas:
        if h["spec"]["scaleTargetRef"]["name"] not in deployments:
            fail(f"HPA/{h['metadata']['name']}", "scaleTargetRef names no Deployment")
        if h["spec"]["minReplicas"] < 1 or h["spec"]["maxReplicas"] < h["spec"]["minReplicas"]:
            fail(f"HPA/{h['metadata']['name']}", "bad replica bounds")
    pdb_targets = {p["spec"]["selector"]["matchLabels"].get("app.kubernetes.io/name")
                   for p in by_kind.get("PodDisruptionBudget", [])}
    for d in OURS:
        if d in deployments and d not in pdb_targets:
            fail(d, "no PodDisruptionBudget")
    cp = [d for d in by_kind.get("Deployment", []) if d["metadata"]["name"] == "aiproxy-control-plane"]
    if cp and cp[0]["spec"].get("replicas", 1) < 2:
        fail("aiproxy-control-plane", "fewer than 2 replicas")
    check_network_policy(by_kind.get("NetworkPolicy", []))

    if failures:
        print(f"{rendered}: {len(failures)} problem(s)")
        for f in failures:
            print("  " + f)
        sys.exit(1)
    print(f"{rendered}: {len(docs)} objects, all checks passed")


def check_env(where, c, volumes, secrets, known, binary, which):
    mounts = {m["mountPath"].rstrip("/"): m["name"] for m in c.get("volumeMounts", [])}
    env = {}
    for e in c.get("env", []):
        n = e["name"]
        if not n.startswith("AIPROXY_"):
            continue
        base = n[: -len("_FILE")] if n.endswith("_FILE") else n
        if base not in known:
            fail(where, f"{n}: not a variable the binary knows")
        if base in SECRET_VARS and not n.endswith("_FILE"):
            fail(where, f"{n}: a secret given inline; use {n}_FILE with a Secret volume")
        if n.endswith("_FILE"):
            path = e.get("value", "")
            dirname, fname = os.path.dirname(path), os.path.basename(path)
            vol = volumes.get(mounts.get(dirname, ""))
            if not vol or "secret" not in vol:
                fail(where, f"{n}: {path} is not on a mounted Secret volume")
            else:
                items = vol["secret"].get("items")
                keys = [i["path"] for i in items] if items else None
                sec = secrets.get(vol["secret"]["secretName"])
                if keys is None and sec is not None:
                    keys = list((sec.get("data") or {}).keys())
                if keys is not None and fname not in keys:
                    fail(where, f"{n}: the Secret volume has no file {fname}")
        if "value" in e:
            env[n] = e["value"]
        elif "valueFrom" in e:
            env[n] = "pod-from-field"
    if binary:
        run_check_config(where, binary, which, env)


def run_check_config(where, binary, which, env):
    """Run the binary's own validation with this container's environment."""
    with tempfile.TemporaryDirectory() as tmp:
        fake = {
            "AIPROXY_MASTER_KEY_FILE": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            "AIPROXY_NODE_TOKEN_FILE": "check-config-node-token-0123456789abcdef",
            "AIPROXY_DATABASE_URL_FILE": "postgres://aiproxy:x@127.0.0.1:1/aiproxy",
        }
        run_env = {"PATH": os.environ.get("PATH", "")}
        for k, v in env.items():
            if k.endswith("_FILE"):
                p = os.path.join(tmp, k)
                open(p, "w").write(fake.get(k, "x"))
                v = p
            elif k.startswith("AIPROXY_GRPC_TLS_") and v.startswith("/"):
                p = os.path.join(tmp, k)
                open(p, "w").write("-----BEGIN PLACEHOLDER-----\n")
                v = p
            elif k == "AIPROXY_CACHE_DIR":
                v = os.path.join(tmp, "cache")
            run_env[k] = v
        args = [binary, "check-config"]
        r = subprocess.run(args, env=run_env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            fail(where, f"`{which} check-config` refused the pod's environment: "
                        f"{(r.stderr or r.stdout).strip()}")


def check_drain(name, spec):
    c = spec["containers"][0]
    raw = next((e.get("value") for e in c.get("env", [])
                if e["name"] == "AIPROXY_DRAIN_TIMEOUT_SECS"), "30")
    if not str(raw).isdigit():
        fail(name, f"AIPROXY_DRAIN_TIMEOUT_SECS is not a number of seconds: {raw!r}")
        return
    drain = int(raw)
    pre = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if grace <= drain + pre:
        fail(name, f"terminationGracePeriodSeconds {grace} <= drain {drain}s + preStop {pre}s")


def check_network_policy(policies):
    guarded = False
    for p in policies:
        if p["spec"]["podSelector"].get("matchLabels", {}).get(
                "app.kubernetes.io/name") != "aiproxy-control-plane":
            continue
        for rule in p["spec"].get("ingress", []):
            ports = {x.get("port") for x in rule.get("ports", [])}
            if 8001 in ports or "grpc" in ports:
                peers = rule.get("from", [])
                names = {f.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
                         for f in peers}
                if not peers or names != {"aiproxy-data-plane"} or any(
                        "namespaceSelector" in f or "ipBlock" in f for f in peers):
                    fail(f"NetworkPolicy/{p['metadata']['name']}",
                         "gRPC port reachable from more than data-plane pods")
                else:
                    guarded = True
            elif not ports:
                fail(f"NetworkPolicy/{p['metadata']['name']}", "a rule opens every port")
    if not guarded:
        fail("control plane", "no NetworkPolicy restricting the gRPC port to data-plane pods")


if __name__ == "__main__":
    main()
