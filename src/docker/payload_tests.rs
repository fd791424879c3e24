use super::*;

fn name(name: &str, instance_id: &str, role_suffix: &str) -> ExAppName {
    ExAppName {
        name: name.into(),
        instance_id: instance_id.into(),
        role_suffix: role_suffix.into(),
    }
}

/// H-85: container and volume names.
#[test]
fn h85_names() {
    let rows = [
        (name("llm2", "", ""), "nc_app_llm2", "nc_app_llm2_data"),
        (
            name("llm2", "inst1", ""),
            "nc_app_inst1_llm2",
            "nc_app_inst1_llm2_data",
        ),
        (
            name("llm2", "", "worker"),
            "nc_app_llm2_worker",
            "nc_app_llm2_data",
        ),
        (
            name("llm2", "inst1", "worker"),
            "nc_app_inst1_llm2_worker",
            "nc_app_inst1_llm2_data",
        ),
    ];
    for (n, container, volume) in rows {
        assert_eq!(n.container(), container, "{n:?}");
        assert_eq!(n.volume(), volume, "{n:?}");
    }
}

#[test]
fn name_payloads() {
    let ok: [(&str, ExAppName); 3] = [
        (r#"{"name":"a"}"#, name("a", "", "")),
        (
            r#"{"name":"a","instance_id":"i","role_suffix":"r","extra":1}"#,
            name("a", "i", "r"),
        ),
        (r#"{"name":"a","instance_id":""}"#, name("a", "", "")),
    ];
    for (body, want) in ok {
        assert_eq!(parse_name(body.as_bytes()), Ok(want), "{body}");
    }
    let bad: [(&str, PayloadError); 6] = [
        ("", PayloadError::InvalidJson),
        ("{", PayloadError::InvalidJson),
        (
            "[1]",
            PayloadError::Invalid(vec!["body: Input should be a valid dictionary".into()]),
        ),
        (
            "{}",
            PayloadError::Invalid(vec!["name: Field required".into()]),
        ),
        (
            r#"{"name":5}"#,
            PayloadError::Invalid(vec!["name: Input should be a valid string".into()]),
        ),
        (
            r#"{"name":"a","instance_id":null,"role_suffix":[]}"#,
            PayloadError::Invalid(vec![
                "instance_id: Input should be a valid string".into(),
                "role_suffix: Input should be a valid string".into(),
            ]),
        ),
    ];
    for (body, want) in bad {
        assert_eq!(parse_name(body.as_bytes()), Err(want), "{body}");
    }
}

#[test]
fn messages() {
    assert_eq!(PayloadError::InvalidJson.message(), "Invalid JSON body");
    let e = PayloadError::Invalid(vec!["name: Field required".into(), "x: y".into()]);
    assert_eq!(
        e.message(),
        "Payload validation error: name: Field required; x: y"
    );
}

#[test]
fn lax_bools() {
    let rows: [(&str, Result<bool, ()>); 9] = [
        (r#"{"name":"a"}"#, Ok(false)),
        (r#"{"name":"a","remove_data":true}"#, Ok(true)),
        (r#"{"name":"a","remove_data":1}"#, Ok(true)),
        (r#"{"name":"a","remove_data":0}"#, Ok(false)),
        (r#"{"name":"a","remove_data":"true"}"#, Ok(true)),
        (r#"{"name":"a","remove_data":"0"}"#, Ok(false)),
        (r#"{"name":"a","remove_data":"Yes"}"#, Ok(true)),
        (r#"{"name":"a","remove_data":2}"#, Err(())),
        (r#"{"name":"a","remove_data":"maybe"}"#, Err(())),
    ];
    for (body, want) in rows {
        let got = parse_remove(body.as_bytes())
            .map(|p| p.remove_data)
            .map_err(|_| ());
        assert_eq!(got, want, "{body}");
    }
}

#[test]
fn certs_payload_defaults() {
    let p = parse_certs(br#"{"name":"a"}"#).unwrap();
    assert_eq!((p.system_certs_bundle, p.install_frp_certs), (None, true));
    let p = parse_certs(br#"{"name":"a","system_certs_bundle":null,"install_frp_certs":false}"#)
        .unwrap();
    assert_eq!((p.system_certs_bundle, p.install_frp_certs), (None, false));
    let p = parse_certs(br#"{"name":"a","system_certs_bundle":"PEM"}"#).unwrap();
    assert_eq!(p.system_certs_bundle.as_deref(), Some("PEM"));
    assert!(parse_certs(br#"{"name":"a","system_certs_bundle":3}"#).is_err());
}

#[test]
fn image_ref_payload() {
    assert_eq!(
        parse_image_ref(br#"{"image_ref":"img:1"}"#),
        Ok("img:1".to_string())
    );
    let rows = [
        (r#"{}"#, "image_ref: Field required"),
        (
            r#"{"image_ref":""}"#,
            "image_ref: String should have at least 1 character",
        ),
        (
            r#"{"image_ref":1}"#,
            "image_ref: Input should be a valid string",
        ),
    ];
    for (body, want) in rows {
        assert_eq!(
            parse_image_ref(body.as_bytes()),
            Err(PayloadError::Invalid(vec![want.into()])),
            "{body}"
        );
    }
}

#[test]
fn create_payload_errors() {
    let rows = [
        (r#"{"name":"a"}"#, vec!["image_id: Field required"]),
        (
            r#"{"name":"a","image_id":"i","compute_device":"tpu"}"#,
            vec!["compute_device: Input should be 'cpu', 'rocm' or 'cuda'"],
        ),
        (
            r#"{"name":"a","image_id":"i","environment_variables":["A=1",2]}"#,
            vec!["environment_variables: Input should be a list of valid strings"],
        ),
        (
            r#"{"name":"a","image_id":"i","mount_points":[{"source":"/s"}]}"#,
            vec!["mount_points.0.target: Field required"],
        ),
        (
            r#"{"name":"a","image_id":"i","mount_points":[1]}"#,
            vec!["mount_points.0: Input should be a valid dictionary"],
        ),
        (
            r#"{"name":"a","image_id":"i","resource_limits":[]}"#,
            vec!["resource_limits: Input should be a valid dictionary"],
        ),
        (
            r#"{"image_id":5}"#,
            vec![
                "name: Field required",
                "image_id: Input should be a valid string",
            ],
        ),
    ];
    for (body, want) in rows {
        let want = PayloadError::Invalid(want.into_iter().map(String::from).collect());
        assert_eq!(parse_create(body.as_bytes()), Err(want), "{body}");
    }
}

#[test]
fn create_image_alias_only_when_image_id_absent() {
    let p = parse_create(br#"{"name":"a","image_id":"id","image":"alias"}"#).unwrap();
    assert_eq!(p.image_id, "id");
    let p = parse_create(br#"{"name":"a","image":"alias"}"#).unwrap();
    assert_eq!(p.image_id, "alias");
    let p = parse_create(br#"{"name":"a","image_id":"i","mount_points":[{"source":"/s","target":"/t","mode":"ro"}]}"#).unwrap();
    assert_eq!(
        p.mount_points,
        vec![MountPoint {
            source: "/s".into(),
            target: "/t".into(),
            mode: "ro".into()
        }]
    );
    assert_eq!(p.compute_device, ComputeDevice::Cpu);
}
