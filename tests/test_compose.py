"""docker-compose.yml and the files it mounts, validated offline (no docker engine here).

``docker-compose config`` (Debian's 1.29.2) checks the schema; the rest checks that the services,
ports, mounts, Prometheus, Grafana and collector configurations agree with each other.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
SERVICES = {
    "app",
    "app-2",
    "nginx",
    "llm",
    "chroma",
    "postgres",
    "otel-collector",
    "prometheus",
    "grafana",
    "phoenix",
}


def _compose(*args: str, cwd: Path = ROOT, file: Path = COMPOSE) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is missing: run `make system-deps` (Debian package docker-compose)")
    return subprocess.run([exe, "-f", str(file), *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The resolved compose configuration (defaults of every ${VAR:-...} applied)."""
    proc = _compose("config")
    assert proc.returncode == 0, proc.stderr
    return dict(yaml.safe_load(proc.stdout))


def test_compose_file_is_valid() -> None:
    proc = _compose("config", "-q")
    assert proc.returncode == 0, proc.stderr


def test_compose_validation_rejects_a_broken_file(tmp_path: Path) -> None:
    data = yaml.safe_load(COMPOSE.read_text())
    data["services"]["app"]["depends_on"]["nowhere"] = {"condition": "service_started"}
    data["services"]["app"]["healthcheck"]["start_interval"] = "1s"  # newer than the v1 schema
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(yaml.safe_dump(data))
    proc = _compose("config", "-q", cwd=ROOT, file=broken)
    assert proc.returncode != 0


def test_services_ports_and_images(config: dict[str, Any]) -> None:
    services = config["services"]
    assert SERVICES <= set(services)
    for name, svc in services.items():
        for port in svc.get("ports", []):
            published = port if isinstance(port, str) else f"{port.get('host_ip')}:{port.get('published')}"
            assert published.startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
        image = svc.get("image", "")
        assert svc.get("build") or (":" in image and not image.endswith(":latest")), (
            f"{name}: unpinned {image}"
        )
    assert services["app"]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["llm"]["image"] == services["app"]["image"]
    assert "ragloop llm serve" in " ".join(services["llm"]["command"])
    assert services["llm"]["environment"]["RAGLOOP_LLM_HOST"] == "0.0.0.0"
    app_env = services["app"]["environment"]
    assert app_env["OPENAI_BASE_URL"] == "http://llm:8081/v1"
    assert app_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector:4317"
    assert app_env["RAGLOOP_CHROMA_URL"] == "http://chroma:8000"
    assert "@postgres:5432/" in app_env["RAGLOOP_DATABASE_URL"]


def test_every_env_var_the_app_reads_is_a_setting(config: dict[str, Any]) -> None:
    from ragloop.settings import Settings

    names = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        names |= set(getattr(alias, "choices", [alias]))
    for svc in ("app", "llm", "drift"):
        env = config["services"][svc]["environment"]
        unknown = {k for k in env if k not in names} - {
            "OTEL_SERVICE_NAME",
            "HF_HUB_OFFLINE",
            "FORWARDED_ALLOW_IPS",
        }
        assert unknown == set(), f"{svc} sets variables no setting reads: {unknown}"


def test_bind_mounts_exist(config: dict[str, Any]) -> None:
    for name, svc in config["services"].items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if source.startswith(("/", ".")):
                assert Path(source).exists() or (ROOT / source).exists(), f"{name}: missing {source}"


def _mount(config: dict[str, Any], service: str, source: Path) -> str:
    for vol in config["services"][service]["volumes"]:
        parts = vol.split(":")
        if Path(parts[0]).resolve() == source.resolve():
            return parts[1]
    raise AssertionError(f"{service} does not mount {source}")


def test_prometheus_config_scrapes_the_services_and_loads_the_alert_rules(config: dict[str, Any]) -> None:
    prom_cfg = ROOT / "deploy" / "prometheus" / "prometheus.yml"
    proc = subprocess.run(["promtool", "check", "config", str(prom_cfg)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = yaml.safe_load(prom_cfg.read_text())
    targets = {t for job in cfg["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert {"app:7860", "drift-metrics:9100"} <= targets
    rules_dir = _mount(config, "prometheus", ROOT / "grafana" / "alerts")
    assert cfg["rule_files"] == [f"{rules_dir}/*.rules.yml"]
    assert _mount(config, "prometheus", prom_cfg) == "/etc/prometheus/prometheus.yml"
    assert any(a.endswith("/drift/metrics") for a in config["services"]["drift-metrics"]["command"])


def test_grafana_provisioning_matches_the_dashboards(config: dict[str, Any]) -> None:
    prov = ROOT / "grafana" / "provisioning"
    assert _mount(config, "grafana", prov) == "/etc/grafana/provisioning"
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((prov / "dashboards" / "ragloop.yml").read_text())["providers"][0]
    assert provider["options"]["path"] == _mount(config, "grafana", ROOT / "grafana" / "dashboards")
    for path in (ROOT / "grafana" / "dashboards").glob("*.json"):
        variables = json.loads(path.read_text())["templating"]["list"]
        ds_var = next(v for v in variables if v["name"] == "DS_PROMETHEUS")
        assert ds_var["current"]["value"] == ds["uid"], path.name
    home = config["services"]["grafana"]["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert (ROOT / "grafana" / "dashboards" / Path(home).name).exists()


def _merged(*files: Path) -> dict[str, Any]:
    """The collector's merge of several --config files (maps merge, lists are replaced)."""

    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    result: dict[str, Any] = {}
    for f in files:
        result = merge(result, yaml.safe_load(f.read_text()))
    return result


@pytest.mark.parametrize("overlay", ["local", "upstream"])
def test_collector_pipelines_reference_defined_components(config: dict[str, Any], overlay: str) -> None:
    cdir = ROOT / "deploy" / "otel-collector"
    assert _mount(config, "otel-collector", cdir) == "/etc/otelcol-contrib"
    command = " ".join(config["services"]["otel-collector"]["command"])
    assert "--config=/etc/otelcol-contrib/base.yaml" in command and "local.yaml" in command  # the default
    cfg = _merged(cdir / "base.yaml", cdir / f"{overlay}.yaml")
    pipelines = cfg["service"]["pipelines"]
    assert set(pipelines) == {"traces", "metrics", "logs"}
    for pipeline in pipelines.values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(cfg[kind]), (overlay, kind)
    assert "otlp/phoenix" in pipelines["traces"]["exporters"]
    assert cfg["exporters"]["otlp/phoenix"]["endpoint"].split(":")[0] in config["services"]
    assert cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")
    if overlay == "upstream":
        env = config["services"]["otel-collector"]["environment"]
        for var in ("OTLP_UPSTREAM_ENDPOINT", "OTLP_UPSTREAM_INSECURE", "OTLP_UPSTREAM_HEADERS_KEY"):
            assert var in env and f"${{env:{var}}}" in (cdir / "upstream.yaml").read_text()


def test_dockerfile_pins_cpu_torch_before_the_project() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "\nFROM python:3.11-slim\n" in text
    torch = text.index("pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu")
    assert torch < text.index("pip install -c constraints.txt '.[all]'")
    # The build context is the repository: its 3 GB .venv must stay out (BuildKit's per-Dockerfile ignore).
    rules = [
        r for r in (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines() if r and r[0] != "#"
    ]
    assert rules[0] == "*" and not any(".venv" in r or "data" in r for r in rules)


def _packages() -> list[str]:
    """The top-level packages pyproject installs (``[tool.setuptools.packages.find] include``)."""
    import tomllib

    include = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    return sorted(p.rstrip("*") for p in include["include"])


def test_the_image_holds_every_package() -> None:
    # The image once lacked chatlog/: `ragloop serve` would have died on its first import.
    docker = (ROOT / "deploy" / "Dockerfile").read_text()
    ignore = (ROOT / "deploy" / "Dockerfile.dockerignore").read_text().splitlines()
    for package in _packages():
        assert f"\nCOPY {package} {package}\n" in docker, f"deploy/Dockerfile does not copy {package}/"
        assert f"!{package}/" in ignore, f"deploy/Dockerfile.dockerignore keeps {package}/ out of the context"


def test_the_app_service_runs_the_composition_root(config: dict[str, Any]) -> None:
    # `ragloop serve` (like `ragloop run`) builds ragloop.app.build_application: the online evaluator
    # and the outbox worker run in the compose deployment too.
    app = config["services"]["app"]
    command = " ".join(app["command"])
    assert "ragloop serve" in command
    assert str(app["environment"].get("RAGLOOP_EVAL_ONLINE", "true")).lower() != "false"
    from typer.testing import CliRunner

    from ragloop.cli import app as cli

    assert CliRunner().invoke(cli, ["serve", "--help"]).exit_code == 0
    import inspect

    from ragloop import cli as cli_module

    assert "ragloop.app import serve" in inspect.getsource(cli_module.serve)


def _app_replicas(config: dict[str, Any]) -> list[str]:
    return sorted(
        n for n, svc in config["services"].items() if "ragloop serve" in " ".join(svc.get("command", []))
    )


def test_two_app_replicas_share_everything_behind_nginx(config: dict[str, Any], tmp_path: Path) -> None:
    import re

    from tests.scaleout import nginx_binary, render_nginx_conf

    services = config["services"]
    replicas = _app_replicas(config)
    assert replicas == ["app", "app-2"]
    first, second = (services[n] for n in replicas)
    # One image, one configuration, one data volume (uploads, BM25 file); only the first indexes.
    assert second["image"] == first["image"]
    assert second["environment"] == first["environment"]
    assert set(second["volumes"]) == set(first["volumes"])
    assert "corpus index" in " ".join(first["command"]) and "corpus index" not in " ".join(second["command"])
    assert second["depends_on"]["app"]["condition"] == "service_healthy"
    # Only nginx publishes the chat port; it mounts the shipped configuration.
    for name in replicas:
        assert not services[name].get("ports"), f"{name} publishes a port: requests must go through nginx"
    nginx = services["nginx"]
    assert [str(p).removesuffix("/tcp") for p in nginx["ports"]] == ["127.0.0.1:7860:7860"]
    conf = ROOT / "deploy" / "nginx" / "nginx.conf"
    assert _mount(config, "nginx", conf) == "/etc/nginx/nginx.conf"
    assert set(nginx["depends_on"]) == set(replicas)
    # Every upstream lists every replica on the port it serves.
    text = conf.read_text()
    upstreams = re.findall(r"upstream (\w+) \{(.*?)\}", text, flags=re.S)
    assert {name for name, _ in upstreams} == {"ragloop_api", "ragloop_ui"}
    for name in replicas:
        assert services[name]["environment"]["FORWARDED_ALLOW_IPS"] == "*"  # client addresses via nginx
    for name, body in upstreams:
        assert re.findall(r"server ([\w-]+):7860", body) == replicas, name
    assert "hash $ragloop_affinity consistent" in dict(upstreams)["ragloop_ui"]  # Gradio needs stickiness
    assert re.search(r"listen 7860;", text)
    # Prometheus scrapes each replica itself.
    prom = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert {f"{n}:7860" for n in replicas} <= targets
    # nginx itself accepts the file (the compose host names replaced by local ports).
    rendered = tmp_path / "nginx.conf"
    rendered.write_text(render_nginx_conf(text, [1, 2], 18080, tmp_path))
    proc = subprocess.run(
        [
            nginx_binary(),
            "-t",
            "-c",
            str(rendered),
            "-g",
            f"pid {tmp_path / 'pid'}; error_log {tmp_path / 'err'};",
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
