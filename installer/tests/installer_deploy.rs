//! deploy/: the kustomize tree. Checked twice: from the source files (kinds, references,
//! patches; needs nothing but this crate), and, where kubectl is installed, on what
//! `kubectl kustomize` renders for the base and each overlay. CI machines installed from Debian
//! may lack kubectl: then the rendered check says it skipped, unless REQUIRE_KUBECTL=1.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const HANDLER: &str = "strict-supplementalgroups";
const NAMESPACE: &str = "strict-supplementalgroups-system";
const OVERLAYS: [(&str, &str); 2] = [("containerd", "--cri=containerd"), ("crio", "--cri=crio")];

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
fn check_objects(docs: &[Value], configmap_names: &BTreeSet<String>, cri_arg: &str) {
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

    let role = one(docs, "ClusterRole");
    let binding = one(docs, "ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let subjects = binding["subjects"].as_array().unwrap();
    assert!(
        subjects
            .iter()
            .any(|s| s["kind"] == "Group" && s["name"] == "system:nodes"),
        "{subjects:?}"
    );
    let rules = role["rules"].as_array().unwrap();
    assert!(
        rules.iter().any(|r| strs(&r["apiGroups"]) == [""]
            && strs(&r["resources"]).contains(&"nodes/proxy")
            && strs(&r["verbs"]).contains(&"get")),
        "{rules:?}"
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
    let sa = one(docs, "ServiceAccount");
    assert_eq!(spec["serviceAccountName"], sa["metadata"]["name"]);
    for namespaced in [ds, sa] {
        assert_eq!(namespaced["metadata"]["namespace"], NAMESPACE);
    }

    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["securityContext"]["privileged"], true);
    let args = strs(&c["args"]);
    assert_eq!(args[0], "install");
    assert_eq!(args[1], cri_arg);
    for required in ["--wait", "--uninstall-on-exit"] {
        assert!(args.contains(&required), "{args:?}");
    }
    let arg_value = |flag: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{flag}=")))
            .unwrap_or_else(|| panic!("no {flag}= in {args:?}"))
    };
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
    let ready = arg_value("--ready-file");
    assert!(strs(&c["readinessProbe"]["exec"]["command"]).contains(&ready));
}

/// The runtime config a ConfigMap carries: valid TOML with the kubelet source.
fn check_runtime_config(text: &str) {
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
    check_objects(&docs, &names, "--cri=auto");
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
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("kubectl"))
        .find(|p| p.is_file())
}

#[test]
fn every_overlay_renders() {
    let Some(kubectl) = kubectl() else {
        assert!(
            std::env::var_os("REQUIRE_KUBECTL").is_none(),
            "REQUIRE_KUBECTL is set but kubectl is not installed"
        );
        eprintln!("skipped: kubectl is not installed (sources_are_consistent still ran)");
        return;
    };
    let mut dirs = vec![(deploy().join("base"), "--cri=auto")];
    for (overlay, cri_arg) in OVERLAYS {
        dirs.push((deploy().join("overlays").join(overlay), cri_arg));
    }
    for (dir, cri_arg) in dirs {
        let out = Command::new(&kubectl)
            .arg("kustomize")
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {} failed:\n{}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        let docs: Vec<Value> = serde_saphyr::from_multiple::<Value>(&text)
            .unwrap()
            .into_iter()
            .filter(|v| !v.is_null())
            .collect();
        let configmaps: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "ConfigMap").collect();
        assert_eq!(configmaps.len(), 1, "{}", dir.display());
        let cm = configmaps[0];
        assert_eq!(cm["metadata"]["namespace"], NAMESPACE);
        check_runtime_config(cm["data"]["config.toml"].as_str().unwrap());
        let names = BTreeSet::from([cm["metadata"]["name"].as_str().unwrap().to_owned()]);
        check_objects(&docs, &names, cri_arg);
        for d in &docs {
            assert_eq!(
                d["metadata"]["labels"]["app.kubernetes.io/part-of"], "strict-supplementalgroups",
                "{} {}",
                d["kind"], d["metadata"]["name"]
            );
        }
    }
}
