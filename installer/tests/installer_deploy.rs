//! deploy/: the kustomize tree. Checked twice: from the source files (kinds, references,
//! patches; needs nothing but this crate), and on what `kubectl kustomize` renders for the base
//! (the narrow-RBAC default), both CRI overlays, the uninstall overlay and an overlay with the
//! nodes/proxy component. scripts/bootstrap provides kubectl (scripts/fetch-kubectl); without
//! one the rendered check skips, or fails under STRICT_SG_NO_SKIP=1 (CI) or REQUIRE_KUBECTL=1.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const HANDLER: &str = "strict-supplementalgroups";
const NAMESPACE: &str = "strict-supplementalgroups-system";
const OVERLAYS: [(&str, &str); 2] = [("containerd", "--cri=containerd"), ("crio", "--cri=crio")];
const NODE_LABEL_KEY: &str = "strict-supplementalgroups.io/installed";
const KUBELET_READER: &str = "strict-supplementalgroups:kubelet-pods-reader";
const NODE_LABELLER: &str = "strict-supplementalgroups:node-labeller";

/// What a rendering is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Install,
    Uninstall,
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind} {name}");
    found[0]
}

fn deploy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

fn yaml_docs(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "expected exactly one {kind}");
    found[0]
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// The checks that hold for the base and every rendering. `configmap_names` are the names the
/// DaemonSet may mount.
fn check_objects(
    docs: &[Value],
    configmap_names: &BTreeSet<String>,
    cri_arg: &str,
    mode: Mode,
    nodes_proxy: bool,
) {
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "RuntimeClass",
        "DaemonSet",
    ] {
        assert!(kinds.contains(kind), "no {kind}: {kinds:?}");
    }
    assert_eq!(one(docs, "Namespace")["metadata"]["name"], NAMESPACE);
    assert_eq!(
        one(docs, "Namespace")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"],
        "privileged"
    );

    let rc = one(docs, "RuntimeClass");
    assert_eq!(rc["apiVersion"], "node.k8s.io/v1");
    assert_eq!(rc["metadata"]["name"], HANDLER);
    assert_eq!(rc["handler"], HANDLER);

    // The kubelet lookup: nodes/pods for system:nodes (nodes/proxy only with the component).
    let reader = named(docs, "ClusterRole", KUBELET_READER);
    let binding = named(docs, "ClusterRoleBinding", KUBELET_READER);
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], reader["metadata"]["name"]);
    let subjects = binding["subjects"].as_array().unwrap();
    assert!(
        subjects
            .iter()
            .any(|s| s["kind"] == "Group" && s["name"] == "system:nodes"),
        "{subjects:?}"
    );
    let rules = reader["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(strs(&rules[0]["apiGroups"]), [""]);
    assert_eq!(strs(&rules[0]["verbs"]), ["get"]);
    let resources = strs(&rules[0]["resources"]);
    if nodes_proxy {
        assert_eq!(resources, ["nodes/pods", "nodes/proxy"]);
    } else {
        assert_eq!(resources, ["nodes/pods"], "the default is the narrow grant");
    }
    // The installer's own grant: get/patch nodes (its node label), for its ServiceAccount only.
    let labeller = named(docs, "ClusterRole", NODE_LABELLER);
    let rules = labeller["rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(strs(&rules[0]["resources"]), ["nodes"]);
    assert_eq!(strs(&rules[0]["verbs"]), ["get", "patch"]);
    let binding = named(docs, "ClusterRoleBinding", NODE_LABELLER);
    assert_eq!(binding["roleRef"]["name"], NODE_LABELLER);
    let sa = one(docs, "ServiceAccount");
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": sa["metadata"]["name"], "namespace": NAMESPACE}])
    );
    assert_ne!(sa["automountServiceAccountToken"], false);

    // Pods of the RuntimeClass only go where the installer verified the handler.
    assert_eq!(
        rc["scheduling"]["nodeSelector"][NODE_LABEL_KEY], "true",
        "the RuntimeClass selects the installer's node label"
    );

    let ds = one(docs, "DaemonSet");
    assert_eq!(ds["apiVersion"], "apps/v1");
    let spec = &ds["spec"]["template"]["spec"];
    assert_eq!(
        ds["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"],
        ds["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    );
    assert_eq!(spec["hostPID"], true);
    assert_eq!(spec["priorityClassName"], "system-node-critical");
    assert!(
        spec["tolerations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["operator"] == "Exists" && t.get("key").is_none()),
        "tolerates every taint"
    );
    assert_eq!(spec["serviceAccountName"], sa["metadata"]["name"]);
    assert_ne!(
        spec["automountServiceAccountToken"], false,
        "the token labels the node"
    );
    assert_eq!(
        spec["nodeSelector"]["kubernetes.io/arch"], "amd64",
        "the image is built for x86_64 only"
    );
    for namespaced in [ds, sa] {
        assert_eq!(namespaced["metadata"]["namespace"], NAMESPACE);
    }

    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["securityContext"]["privileged"], true);
    let args = strs(&c["args"]);
    assert!(
        !args.contains(&"--uninstall-on-exit"),
        "a SIGTERM must never uninstall: {args:?}"
    );
    assert!(args.contains(&"--wait"), "{args:?}");
    let arg_value = |flag: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{flag}=")))
            .unwrap_or_else(|| panic!("no {flag}= in {args:?}"))
    };
    let ready = arg_value("--ready-file");
    assert!(strs(&c["readinessProbe"]["exec"]["command"]).contains(&ready));
    let env = c["env"].as_array().expect("env");
    assert!(
        env.iter().any(|e| e["name"] == "NODE_NAME"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"),
        "the installer knows its node: {env:?}"
    );
    // The label the installer sets is the one the RuntimeClass selects.
    let label = args
        .iter()
        .find_map(|a| a.strip_prefix("--node-label="))
        .unwrap_or("strict-supplementalgroups.io/installed=true");
    assert_eq!(label, format!("{NODE_LABEL_KEY}=true"));
    if mode == Mode::Uninstall {
        assert_eq!(args[0], "uninstall");
        assert_eq!(
            ds["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
            "100%"
        );
        return;
    }
    assert_eq!(args[0], "install");
    assert_eq!(args[1], cri_arg);
    // The handler the installer registers is the RuntimeClass's.
    assert_eq!(
        args.iter()
            .find_map(|a| a.strip_prefix("--handler-name="))
            .unwrap_or(HANDLER),
        HANDLER
    );

    let volumes = spec["volumes"].as_array().unwrap();
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount_of = |volume: &Value| {
        mounts
            .iter()
            .find(|m| m["name"] == volume["name"])
            .unwrap_or_else(|| panic!("volume {} is not mounted", volume["name"]))
    };
    let host = volumes
        .iter()
        .find(|v| v["hostPath"]["path"] == "/")
        .expect("the host's root is mounted");
    assert_eq!(mount_of(host)["mountPath"], arg_value("--host-root"));
    let config = volumes
        .iter()
        .find(|v| v.get("configMap").is_some())
        .expect("a ConfigMap volume");
    let config_name = config["configMap"]["name"].as_str().unwrap();
    assert!(
        configmap_names.contains(config_name),
        "{config_name} not in {configmap_names:?}"
    );
    let config_dir = mount_of(config)["mountPath"].as_str().unwrap();
    assert_eq!(
        arg_value("--runtime-config"),
        format!("{config_dir}/config.toml")
    );
}

/// The runtime config a ConfigMap carries: accepted by the runtime's own parser, with the
/// kubelet source.
fn check_runtime_config(text: &str) {
    strict_supplementalgroups::config::parse(text, None)
        .unwrap_or_else(|e| panic!("the runtime refuses the ConfigMap's config: {e:#}"));
    let doc: toml_edit::DocumentMut = text.parse().unwrap();
    assert_eq!(doc["pod-groups-source"].as_str(), Some("kubelet"));
    assert!(doc["kubeconfig"].as_str().is_some());
    assert!(doc["logging"]["log-file"].as_str().is_some());
}

fn kustomization(dir: &Path) -> Value {
    one(&yaml_docs(&dir.join("kustomization.yaml")), "Kustomization").clone()
}

#[test]
fn sources_are_consistent() {
    let base_dir = deploy().join("base");
    let base = kustomization(&base_dir);
    assert_eq!(base["namespace"], NAMESPACE);
    let mut docs = Vec::new();
    for resource in strs(&base["resources"]) {
        docs.extend(yaml_docs(&base_dir.join(resource)));
    }
    let generators = base["configMapGenerator"].as_array().unwrap();
    let names: BTreeSet<String> = generators
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect();
    for g in generators {
        for file in strs(&g["files"]) {
            check_runtime_config(&std::fs::read_to_string(base_dir.join(file)).unwrap());
        }
    }
    check_objects(&docs, &names, "--cri=auto", Mode::Install, false);
    let image = strs(&Value::Array(vec![
        one(&docs, "DaemonSet")["spec"]["template"]["spec"]["containers"][0]["image"].clone(),
    ]))[0]
        .to_owned();
    assert!(
        base["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == image.as_str()),
        "the images transformer names the DaemonSet's image {image}"
    );

    for (overlay, cri_arg) in OVERLAYS {
        let dir = deploy().join("overlays").join(overlay);
        let k = kustomization(&dir);
        assert!(strs(&k["resources"]).contains(&"../../base"), "{overlay}");
        assert_eq!(k["namespace"], NAMESPACE);
        let gens = k["configMapGenerator"].as_array().unwrap();
        assert_eq!(gens.len(), 1);
        assert!(
            names.contains(gens[0]["name"].as_str().unwrap()),
            "{overlay}"
        );
        assert_eq!(gens[0]["behavior"], "replace");
        for file in strs(&gens[0]["files"]) {
            check_runtime_config(&std::fs::read_to_string(dir.join(file)).unwrap());
        }
        // The JSON patch tests the base's value before replacing it.
        let patch = &k["patches"][0];
        assert_eq!(patch["target"]["kind"], "DaemonSet");
        let ops: Vec<Value> = serde_saphyr::from_str(patch["patch"].as_str().unwrap()).unwrap();
        assert_eq!(ops[0]["op"], "test");
        assert_eq!(ops[0]["value"], "--cri=auto");
        assert_eq!(ops[1]["op"], "replace");
        assert_eq!(ops[1]["path"], ops[0]["path"]);
        assert_eq!(ops[1]["value"], cri_arg);
    }
}

fn kubectl() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("KUBECTL") {
        return Some(PathBuf::from(path));
    }
    let fetched = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/kubectl/bin/kubectl");
    if fetched.is_file() {
        return Some(fetched);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
}

fn render(kubectl: &Path, dir: &Path) -> Vec<Value> {
    let out = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubectl kustomize {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap()
        .into_iter()
        .filter(|v| !v.is_null())
        .collect()
}

fn check_rendered(docs: &[Value], what: &str, cri_arg: &str, mode: Mode, nodes_proxy: bool) {
    let configmaps: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ConfigMap").collect();
    assert_eq!(configmaps.len(), 1, "{what}");
    let cm = configmaps[0];
    assert_eq!(cm["metadata"]["namespace"], NAMESPACE);
    check_runtime_config(cm["data"]["config.toml"].as_str().unwrap());
    let names = BTreeSet::from([cm["metadata"]["name"].as_str().unwrap().to_owned()]);
    check_objects(docs, &names, cri_arg, mode, nodes_proxy);
    for d in docs {
        assert_eq!(
            d["metadata"]["labels"]["app.kubernetes.io/part-of"], "strict-supplementalgroups",
            "{what}: {} {}",
            d["kind"], d["metadata"]["name"]
        );
    }
}

#[test]
fn every_overlay_renders() {
    let Some(kubectl) = kubectl() else {
        assert!(
            std::env::var_os("REQUIRE_KUBECTL").is_none()
                && std::env::var_os("STRICT_SG_NO_SKIP").is_none(),
            "kubectl is required (STRICT_SG_NO_SKIP or REQUIRE_KUBECTL) but not installed: run \
             scripts/bootstrap (scripts/fetch-kubectl)"
        );
        eprintln!("skipped: kubectl is not installed (sources_are_consistent still ran)");
        return;
    };
    let mut dirs = vec![(deploy().join("base"), "--cri=auto")];
    for (overlay, cri_arg) in OVERLAYS {
        dirs.push((deploy().join("overlays").join(overlay), cri_arg));
    }
    for (dir, cri_arg) in dirs {
        let docs = render(&kubectl, &dir);
        check_rendered(
            &docs,
            &dir.display().to_string(),
            cri_arg,
            Mode::Install,
            false,
        );
    }
    let docs = render(&kubectl, &deploy().join("overlays/uninstall"));
    check_rendered(&docs, "overlays/uninstall", "", Mode::Uninstall, false);

    // The opt-in for kubelets without fine-grained authorization, added to an overlay the way
    // deploy/README.md says (kustomize wants the paths relative).
    let tmp = tempfile::tempdir().unwrap();
    let up = "../".repeat(tmp.path().components().count() - 1);
    let deploy_dir = deploy().canonicalize().unwrap();
    let rel = |p: &str| {
        format!(
            "{up}{}/{p}",
            deploy_dir.display().to_string().trim_start_matches('/')
        )
    };
    std::fs::write(
        tmp.path().join("kustomization.yaml"),
        format!(
            "resources:\n  - {}\ncomponents:\n  - {}\n",
            rel("overlays/containerd"),
            rel("components/kubelet-nodes-proxy")
        ),
    )
    .unwrap();
    let docs = render(&kubectl, tmp.path());
    check_rendered(
        &docs,
        "containerd + kubelet-nodes-proxy",
        "--cri=containerd",
        Mode::Install,
        true,
    );
}
