//! The container config `create` sends to `POST /containers/create` (harp-compat.md §4.4,
//! H-77, H-78), built exactly as HaRP does, quirks included (§8.13): `Readonly` spelling on
//! bind mounts (Docker's decoder is case-insensitive), `Memory`/`NanoCPUs` copied even when 0,
//! only NVIDIA `DeviceRequests` for CUDA, no port bindings.

use serde_json::{json, Map, Value};

use super::payload::{ComputeDevice, CreatePayload};

/// Networks that take no per-endpoint config (`EndpointsConfig` is only for custom ones).
const BUILTIN_NETWORKS: [&str; 2] = ["host", "bridge"];
/// ROCm device nodes passed through with the same in-container path.
const ROCM_DEVICES: [&str; 2] = ["/dev/kfd", "/dev/dri"];

/// The JSON body for `POST /containers/create?name=<container>`.
pub fn container_config(p: &CreatePayload) -> Value {
    let volume = p.name.volume();
    let mut mounts = vec![json!({
        "Type": "volume",
        "Source": volume,
        "Target": format!("/{volume}"),
        "ReadOnly": false,
    })];
    mounts.extend(p.mount_points.iter().map(|m| {
        json!({
            "Source": m.source,
            "Target": m.target,
            "Type": "bind",
            "Readonly": m.mode == "ro",
        })
    }));
    let mut host = Map::new();
    host.insert("NetworkMode".into(), json!(p.network_mode));
    host.insert("RestartPolicy".into(), json!({ "Name": p.restart_policy }));
    host.insert("Mounts".into(), Value::Array(mounts));
    add_devices(&mut host, p.compute_device);
    if let Some(memory) = p.resource_limits.get("memory") {
        host.insert("Memory".into(), memory.clone());
    }
    if let Some(cpus) = p.resource_limits.get("nanoCPUs") {
        host.insert("NanoCPUs".into(), cpus.clone());
    }
    let mut config = json!({
        "Image": p.image_id,
        "Hostname": p.name.name,
        "Env": p.environment_variables,
        "HostConfig": host,
    });
    if !BUILTIN_NETWORKS.contains(&p.network_mode.as_str()) {
        config["NetworkingConfig"] = json!({
            "EndpointsConfig": { p.network_mode.clone(): { "Aliases": [p.name.name] } }
        });
    }
    config
}

fn add_devices(host: &mut Map<String, Value>, device: ComputeDevice) {
    match device {
        ComputeDevice::Cpu => {}
        ComputeDevice::Cuda => {
            host.insert(
                "DeviceRequests".into(),
                json!([{ "Driver": "nvidia", "Count": -1, "Capabilities": [["compute", "utility"]] }]),
            );
        }
        ComputeDevice::Rocm => {
            let devices: Vec<Value> = ROCM_DEVICES
                .iter()
                .map(|d| json!({ "PathOnHost": d, "PathInContainer": d, "CgroupPermissions": "rwm" }))
                .collect();
            host.insert("Devices".into(), Value::Array(devices));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::docker::payload::parse_create;

    fn config(body: &str) -> Value {
        container_config(&parse_create(body.as_bytes()).unwrap())
    }

    /// H-77: full config for a custom network, CUDA, bind mounts and limits.
    #[test]
    fn h77_full_config() {
        let got = config(
            r#"{"name":"llm","instance_id":"i1","image_id":"ghcr.io/nc/llm:1","network_mode":"nc_net",
                "environment_variables":["A=1","B=2"],"restart_policy":"always","compute_device":"cuda",
                "mount_points":[{"source":"/host/a","target":"/a"},{"source":"/host/b","target":"/b","mode":"ro"}],
                "resource_limits":{"memory":0,"nanoCPUs":2000000000},"start_container":true}"#,
        );
        let want = json!({
            "Image": "ghcr.io/nc/llm:1",
            "Hostname": "llm",
            "Env": ["A=1", "B=2"],
            "HostConfig": {
                "NetworkMode": "nc_net",
                "RestartPolicy": {"Name": "always"},
                "Mounts": [
                    {"Type": "volume", "Source": "nc_app_i1_llm_data", "Target": "/nc_app_i1_llm_data", "ReadOnly": false},
                    {"Source": "/host/a", "Target": "/a", "Type": "bind", "Readonly": false},
                    {"Source": "/host/b", "Target": "/b", "Type": "bind", "Readonly": true}
                ],
                "DeviceRequests": [{"Driver": "nvidia", "Count": -1, "Capabilities": [["compute", "utility"]]}],
                "Memory": 0,
                "NanoCPUs": 2000000000
            },
            "NetworkingConfig": {"EndpointsConfig": {"nc_net": {"Aliases": ["llm"]}}}
        });
        assert_eq!(got, want);
    }

    /// H-78: `image` alias, default network `bridge` (no EndpointsConfig), defaults elsewhere.
    #[test]
    fn h78_defaults_and_image_alias() {
        let got = config(r#"{"name":"app","image":"img:1"}"#);
        let want = json!({
            "Image": "img:1",
            "Hostname": "app",
            "Env": [],
            "HostConfig": {
                "NetworkMode": "bridge",
                "RestartPolicy": {"Name": "unless-stopped"},
                "Mounts": [{"Type": "volume", "Source": "nc_app_app_data", "Target": "/nc_app_app_data", "ReadOnly": false}]
            }
        });
        assert_eq!(got, want);
    }

    #[test]
    fn h77_rocm_devices_and_host_network() {
        let got =
            config(r#"{"name":"a","image_id":"i","compute_device":"rocm","network_mode":"host"}"#);
        assert_eq!(
            got["HostConfig"]["Devices"],
            json!([
                {"PathOnHost": "/dev/kfd", "PathInContainer": "/dev/kfd", "CgroupPermissions": "rwm"},
                {"PathOnHost": "/dev/dri", "PathInContainer": "/dev/dri", "CgroupPermissions": "rwm"}
            ])
        );
        assert!(got.get("NetworkingConfig").is_none());
        assert!(got["HostConfig"].get("DeviceRequests").is_none());
    }
}
