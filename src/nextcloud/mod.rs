//! STUB replaced by helper "nc": the Nextcloud client (exapp-meta, user-info).

use crate::config::Config;

#[derive(Debug)]
pub struct NcResponse {
    pub status: u16,
    pub body: Vec<u8>,
}

#[derive(Debug)]
pub enum NcError {
    Connect(String),
}

impl std::fmt::Display for NcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NcError::Connect(e) => write!(f, "cannot reach NC_INSTANCE_URL: {e}"),
        }
    }
}

pub struct NcClient;

impl NcClient {
    pub fn new(_cfg: &Config) -> Result<NcClient, NcError> {
        Ok(NcClient)
    }
    pub async fn exapp_meta(&self, _app_id_lc: &str) -> Result<NcResponse, NcError> {
        Err(NcError::Connect("stub".into()))
    }
    pub async fn user_info(
        &self,
        _app_id_lc: &str,
        _headers: &[(&[u8], &[u8])],
    ) -> Result<NcResponse, NcError> {
        Err(NcError::Connect("stub".into()))
    }
}
