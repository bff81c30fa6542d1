#!/usr/bin/env python3
"""Offline checks of the deployment files, run by ctest as deploy_test:

  check_deploy.py <source dir> <nexuscache binary> <nexus-bench binary>

- docker-compose.yml: `docker-compose config -q` passes (Debian's docker-compose) and the
  resolved file has the seed's topology (etcd v3.5, svc1..svc3 on 9999/9998/9997, 8881-8883,
  9101-9103, Prometheus 9090, Grafana 3000 admin/admin with the dashboard provisioned).
- deploy/Dockerfile: multi-stage bookworm build with `scripts/setup build`, slim runtime whose
  package list covers every shared library the binaries load (ldd + dpkg -S), non-root user,
  HEALTHCHECK on /healthz, nexuscache as entrypoint.
- deploy/k8s: yamllint, the objects and fields the issue names, memory limit >= cache budgets,
  and `kubectl kustomize` renders when kubectl is installed.
- deploy/prometheus: `promtool check config`, `check rules`, `test rules`.
- the secure profiles (docker-compose.secure.yml, deploy/k8s-secure): with certificates made
  by scripts/make-certs, every credential a node flag names is a mounted file that exists,
  each node gets its own certificate, and every flag is one nexuscache knows (--help).
Nothing here needs a Docker daemon or a Kubernetes cluster.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import yaml

SRC, NEXUS_BIN, BENCH_BIN = sys.argv[1:4]
del sys.argv[1:4]


def run(*cmd, cwd=SRC):
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def size_bytes(text):
    """'384M' -> bytes (K/M/G are binary, as nexuscache's --cache-bytes parses them)."""
    m = re.fullmatch(r"(\d+)([KMG]?)", text)
    return int(m.group(1)) * {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}[m.group(2)]


def quantity_bytes(text):
    """Kubernetes memory quantity ('512Mi', '1Gi', '500M') -> bytes."""
    m = re.fullmatch(r"(\d+)(Ki|Mi|Gi|K|M|G)?", text)
    unit = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "K": 10**3, "M": 10**6, "G": 10**9}
    return int(m.group(1)) * unit[m.group(2)]


class Compose(unittest.TestCase):
    def test_config_is_valid_and_has_the_seed_topology(self):
        check = run("docker-compose", "-f", "docker-compose.yml", "config", "-q")
        self.assertEqual(check.returncode, 0, check.stderr)
        resolved = run("docker-compose", "-f", "docker-compose.yml", "config")
        self.assertEqual(resolved.returncode, 0, resolved.stderr)
        services = yaml.safe_load(resolved.stdout)["services"]
        self.assertIn("v3.5", services["etcd"]["image"])

        def published(svc):
            out = set()
            for p in services[svc].get("ports", []):
                if isinstance(p, dict):
                    out.add((int(p["published"]), int(p["target"])))
                else:
                    host, container = str(p).split(":")[-2:]
                    out.add((int(host), int(container)))
            return out

        for i, (http, resp, grpc, metrics) in enumerate(
                [(9999, 6379, 8881, 9101), (9998, 6380, 8882, 9102), (9997, 6381, 8883, 9103)],
                start=1):
            svc = f"svc{i}"
            self.assertEqual(published(svc),
                             {(http, 9999), (resp, 6379), (grpc, 8888), (metrics, 9101)}, svc)
            s = services[svc]
            self.assertEqual(s["build"]["dockerfile"], "deploy/Dockerfile")
            # A fixed IP on the compose network (event loops forward to IPs, not names).
            ip = f"172.28.0.1{i}"
            self.assertEqual(s["environment"]["IP_ADDRESS"], ip)
            self.assertEqual(s["networks"]["default"]["ipv4_address"], ip)
            args = s["command"]
            self.assertEqual(args[args.index("--name") + 1], svc)
            self.assertEqual(args[args.index("--etcd") + 1], "etcd:2379")
            self.assertEqual(args[args.index("--metrics-port") + 1], "9101")
            self.assertEqual(args[args.index("--resp-port") + 1], "6379")
        self.assertEqual(published("prometheus"), {(9090, 9090)})
        self.assertEqual(published("grafana"), {(3000, 3000)})
        env = services["grafana"]["environment"]
        self.assertEqual((env["GF_SECURITY_ADMIN_USER"], env["GF_SECURITY_ADMIN_PASSWORD"]),
                         ("admin", "admin"))
        # Every file the compose file mounts exists.
        for svc in ("prometheus", "grafana"):
            for v in services[svc]["volumes"]:
                source = v["source"] if isinstance(v, dict) else v.split(":")[0]
                self.assertTrue(os.path.exists(source), source)

    def test_prometheus_scrapes_the_compose_nodes(self):
        with open(os.path.join(SRC, "deploy/prometheus/prometheus.yml")) as f:
            cfg = yaml.safe_load(f)
        targets = cfg["scrape_configs"][0]["static_configs"][0]["targets"]
        self.assertEqual(targets, ["svc1:9101", "svc2:9101", "svc3:9101"])


def known_flags():
    out = subprocess.run([NEXUS_BIN, "--help"], capture_output=True, text=True, timeout=30)
    return set(re.findall(r"(--[a-z][a-z0-9-]*)", out.stdout))


def flags_in(args):
    return [a.split("=")[0] for a in args if a.startswith("--")]


class SecureCompose(unittest.TestCase):
    def test_the_secure_profile_mounts_every_credential_it_names(self):
        with tempfile.TemporaryDirectory() as secure:
            made = run(os.path.join(SRC, "scripts/make-certs"), secure, "etcd", "svc1", "svc2",
                       "svc3")
            self.assertEqual(made.returncode, 0, made.stderr)
            with open(os.path.join(secure, "tokens"), "w") as f:
                f.write("write 0123456789abcdef\n")
            env = dict(os.environ, NEXUS_SECURE_DIR=secure)
            files = ["-f", "docker-compose.yml", "-f", "docker-compose.secure.yml"]
            resolved = subprocess.run(["docker-compose", *files, "config"], cwd=SRC, env=env,
                                      capture_output=True, text=True, timeout=120)
            self.assertEqual(resolved.returncode, 0, resolved.stderr)
            config = yaml.safe_load(resolved.stdout)
            secrets = {name: s["file"] for name, s in config["secrets"].items()}
            for name, path in secrets.items():
                self.assertTrue(os.path.exists(path), f"secret {name}: {path}")
            known = known_flags()
            services = config["services"]
            etcd = services["etcd"]["command"]
            self.assertIn("--client-cert-auth", etcd)
            self.assertIn("--listen-client-urls=https://0.0.0.0:2379", etcd)
            for i in (1, 2, 3):
                svc = f"svc{i}"
                s = services[svc]
                args = s["command"]
                mounted = {x if isinstance(x, str) else x["source"] for x in s["secrets"]}
                for flag in flags_in(args):
                    self.assertIn(flag, known, f"{svc}: {flag}")
                for flag in ("--tls-cert", "--tls-key", "--tls-ca", "--etcd-ca", "--etcd-cert",
                             "--etcd-key", "--auth-token-file"):
                    path = args[args.index(flag) + 1]
                    self.assertTrue(path.startswith("/run/secrets/"), f"{svc} {flag} {path}")
                    self.assertIn(path[len("/run/secrets/"):], mounted, f"{svc} {flag}")
                # Its own certificate: the name peers check.
                cert = args[args.index("--tls-cert") + 1][len("/run/secrets/"):]
                self.assertEqual(secrets[cert], os.path.join(secure, f"{svc}.pem"))


class SecureKubernetes(unittest.TestCase):
    def test_the_secure_overlay_mounts_every_credential_it_names(self):
        d = os.path.join(SRC, "deploy/k8s-secure")
        with open(os.path.join(d, "kustomization.yaml")) as f:
            kustomization = yaml.safe_load(f)
        self.assertEqual(kustomization["resources"], ["../k8s"])
        (generator,) = kustomization["secretGenerator"]
        files = {os.path.basename(p) for p in generator["files"]}
        (patch,) = load_all(os.path.join(d, kustomization["patches"][0]["path"]))
        pod = patch["spec"]["template"]["spec"]
        self.assertEqual(pod["securityContext"]["fsGroup"], 10001)
        (volume,) = pod["volumes"]
        self.assertEqual(volume["secret"]["secretName"], generator["name"])
        c = pod["containers"][0]
        (mount,) = c["volumeMounts"]
        self.assertEqual(mount["name"], volume["name"])
        base = load_all(os.path.join(SRC, "deploy/k8s/statefulset.yaml"))[0]
        base_c = base["spec"]["template"]["spec"]["containers"][0]
        # The patch replaces the args: it must keep the base's.
        self.assertEqual(c["args"][: len(base_c["args"])], base_c["args"])
        known = known_flags()
        replicas = base["spec"]["replicas"]
        for arg in c["args"]:
            self.assertIn(arg.split("=")[0], known, arg)
            value = arg.split("=", 1)[1]
            if value.startswith(mount["mountPath"] + "/"):
                for n in range(replicas):
                    name = value[len(mount["mountPath"]) + 1:].replace("$(POD_NAME)",
                                                                         f"nexuscache-{n}")
                    self.assertIn(name, files, arg)

    def test_the_secure_overlay_renders_with_made_certificates(self):
        if shutil.which("kubectl") is None:
            self.skipTest("kubectl not installed")
        with tempfile.TemporaryDirectory() as tmp:
            for d in ("k8s", "k8s-secure"):
                shutil.copytree(os.path.join(SRC, "deploy", d), os.path.join(tmp, d))
            certs = os.path.join(tmp, "k8s-secure/certs")
            made = run(os.path.join(SRC, "scripts/make-certs"), certs, "nexuscache-0",
                       "nexuscache-1", "nexuscache-2")
            self.assertEqual(made.returncode, 0, made.stderr)
            with open(os.path.join(certs, "tokens"), "w") as f:
                f.write("write 0123456789abcdef\n")
            out = run("kubectl", "kustomize", os.path.join(tmp, "k8s-secure"))
            self.assertEqual(out.returncode, 0, out.stderr)
            docs = [d for d in yaml.safe_load_all(out.stdout) if d]
            secret = next(d for d in docs if d["kind"] == "Secret")
            self.assertIn("nexuscache-2.key", secret["data"])
            sts = next(d for d in docs if d["kind"] == "StatefulSet")
            volume = sts["spec"]["template"]["spec"]["volumes"][0]
            self.assertEqual(volume["secret"]["secretName"], secret["metadata"]["name"])


class Dockerfile(unittest.TestCase):
    def setUp(self):
        with open(os.path.join(SRC, "deploy/Dockerfile")) as f:
            self.text = f.read()

    def test_stages_user_health_entrypoint(self):
        self.assertRegex(self.text, r"(?m)^FROM debian:bookworm AS build$")
        self.assertRegex(self.text, r"(?m)^FROM debian:bookworm-slim AS runtime$")
        self.assertIn("RUN scripts/setup build", self.text)
        self.assertRegex(self.text, r"(?m)^USER nexus$")
        self.assertRegex(self.text, r"(?m)^ENV NEXUS_HEALTH_URL=http://127\.0\.0\.1:9999/healthz$")
        self.assertRegex(self.text, r'(?m)^HEALTHCHECK .*\\\n\s+CMD curl -fsS "\$NEXUS_HEALTH_URL"')
        self.assertIn('ENTRYPOINT ["nexuscache"]', self.text)
        # Everything the build stage COPYs exists.
        for src in re.findall(r"(?m)^COPY (?!--from)(\S+)", self.text):
            self.assertTrue(os.path.exists(os.path.join(SRC, src)), src)

    def test_runtime_packages_cover_the_binaries(self):
        block = re.search(r"apt-get install -y --no-install-recommends \\\n(.*?)\n &&",
                          self.text, re.S).group(1)
        listed = set(block.replace("\\", " ").split())
        base = {"libc6", "libgcc-s1", "zlib1g"}  # in debian:bookworm-slim
        sanitizers = re.compile(r"^lib(asan|ubsan|lsan|tsan)\d*$")  # an ASan test build
        needed = set()
        for binary in (NEXUS_BIN, BENCH_BIN):
            ldd = run("ldd", binary)
            self.assertEqual(ldd.returncode, 0, ldd.stderr)
            for path in re.findall(r"=> (/\S+)", ldd.stdout):
                owner = run("dpkg", "-S", os.path.realpath(path))
                package = owner.stdout.split(":")[0]
                if owner.returncode == 0 and not sanitizers.match(package):
                    needed.add(package)
        missing = needed - listed - base
        self.assertFalse(missing, f"runtime stage lacks {sorted(missing)} (ldd of the binaries)")
        self.assertIn("curl", listed)  # the HEALTHCHECK


class Kubernetes(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.join(SRC, "deploy/k8s")
        self.objects = {}
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".yaml") and name != "kustomization.yaml":
                for doc in load_all(os.path.join(self.dir, name)):
                    self.objects[(doc["kind"], doc["metadata"]["name"])] = doc

    def test_yamllint(self):
        lint = run("yamllint", "-d", "{extends: relaxed, rules: {line-length: {max: 160}}}",
                   "-s", "deploy/k8s", "deploy/k8s-secure", "docker-compose.yml",
                   "docker-compose.secure.yml",
                   "deploy/prometheus",
                   "deploy/grafana/provisioning")
        self.assertEqual(lint.returncode, 0, lint.stdout + lint.stderr)

    def test_objects_the_issue_names(self):
        kinds = {k for k, _ in self.objects}
        self.assertTrue({"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget"} <= kinds)
        headless = self.objects[("Service", "nexuscache-headless")]
        self.assertEqual(headless["spec"]["clusterIP"], "None")
        client = self.objects[("Service", "nexuscache")]
        self.assertEqual(client["spec"]["ports"][0]["port"], 9999)
        sts = self.objects[("StatefulSet", "nexuscache")]
        self.assertEqual(sts["spec"]["serviceName"], "nexuscache-headless")
        pod = sts["spec"]["template"]
        self.assertEqual(pod["metadata"]["annotations"]["prometheus.io/scrape"], "true")
        c = pod["spec"]["containers"][0]
        env = {e["name"]: e for e in c["env"]}
        self.assertEqual(env["IP_ADDRESS"]["valueFrom"]["fieldRef"]["fieldPath"], "status.podIP")
        for probe in ("readinessProbe", "livenessProbe"):
            self.assertEqual(c[probe]["httpGet"]["path"], "/healthz", probe)
        self.assertTrue(pod["spec"]["securityContext"]["runAsNonRoot"])
        pdb = self.objects[("PodDisruptionBudget", "nexuscache")]
        self.assertEqual(pdb["spec"]["selector"]["matchLabels"],
                         sts["spec"]["selector"]["matchLabels"])
        # Every $(VAR) in the args is defined by env or the ConfigMap.
        config = self.objects[("ConfigMap", "nexuscache")]["data"]
        for var in re.findall(r"\$\((\w+)\)", " ".join(c["args"])):
            self.assertTrue(var in env or var in config, var)

    def test_memory_limit_fits_the_cache_budgets(self):
        config = self.objects[("ConfigMap", "nexuscache")]["data"]
        c = self.objects[("StatefulSet", "nexuscache")]["spec"]["template"]["spec"]["containers"][0]
        limit = quantity_bytes(c["resources"]["limits"]["memory"])
        budget = size_bytes(config["NEXUS_CACHE_BYTES"]) + size_bytes(config["NEXUS_HOT_CACHE_BYTES"])
        self.assertGreaterEqual(limit, budget + (64 << 20), "limit < caches + 64 MiB overhead")

    def test_kustomize_renders(self):
        if shutil.which("kubectl") is None:
            self.skipTest("kubectl not installed")
        out = run("kubectl", "kustomize", "deploy/k8s")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(len([d for d in yaml.safe_load_all(out.stdout) if d]), len(self.objects))


class PrometheusRules(unittest.TestCase):
    def test_config_rules_and_rule_tests(self):
        d = os.path.join(SRC, "deploy/prometheus")
        for cmd in (["promtool", "check", "config", "prometheus.yml"],
                    ["promtool", "check", "rules", "alerts.yml"],
                    ["promtool", "test", "rules", "alerts_test.yml"]):
            out = run(*cmd, cwd=d)
            self.assertEqual(out.returncode, 0, " ".join(cmd) + "\n" + out.stdout + out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
