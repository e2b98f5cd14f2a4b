//! Key material lifecycle: master-key rotation (re-wrap every data key under the current master
//! key) and the temporary-credential signing keys.

use base64::Engine;
use rand::RngCore;

use crate::db::{self, Tx, providers::SigningKeyRow};
use crate::service::providers::aad;
use crate::state::AppState;

pub fn signing_key_aad(id: &str) -> String {
    format!("signing_key:{id}")
}

/// Adds a new active signing key (deactivating the previous ones, which keep verifying).
pub async fn insert_signing_key(st: &AppState, tx: &mut Tx) -> db::DbResult<()> {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let id = uuid::Uuid::now_v7().to_string();
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    let sealed = st.keys().seal(b64.as_bytes(), &signing_key_aad(&id));
    db::providers::deactivate_signing_keys(&mut **tx).await?;
    db::providers::insert_signing_key(
        &mut **tx,
        &SigningKeyRow {
            id,
            sealed_key: sealed,
            key_id: st.keys().current_id().to_string(),
            active: true,
            created_at: st.now_ms(),
        },
    )
    .await
}

/// Fails startup when stored secrets were encrypted with a master key that is not configured.
pub async fn check_master_keys(st: &AppState) -> Result<(), String> {
    let ids = db::providers::key_ids_in_use(st.db().pool())
        .await
        .map_err(|e| e.to_string())?;
    if let Some(unknown) = ids.iter().find(|k| !st.keys().knows(k)) {
        return Err(format!(
            "AIPROXY_MASTER_KEY: stored secrets were encrypted with master key {unknown}, which is neither AIPROXY_MASTER_KEY (key {}) nor in AIPROXY_OLD_MASTER_KEYS; set the right key",
            st.keys().current_id()
        ));
    }
    Ok(())
}

/// Re-wraps every provider secret and signing key under the current master key, in one
/// transaction: all or nothing. Returns how many values were re-wrapped.
pub async fn rotate_master_key(st: &AppState) -> Result<usize, String> {
    let mut tx = st.db().begin().await.map_err(|e| e.to_string())?;
    let creds = db::providers::list_all(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
    let mut n = 0;
    for c in creds {
        if c.key_id == st.keys().current_id() {
            continue;
        }
        let rewrapped = st
            .keys()
            .rewrap(
                &c.sealed_secret,
                &aad(&c.id, &c.org_id, c.project_id.as_deref()),
            )
            .map_err(|e| format!("provider {}: {e}", c.id))?;
        db::providers::set_sealed(&mut *tx, &c.id, &rewrapped, st.keys().current_id())
            .await
            .map_err(|e| e.to_string())?;
        n += 1;
    }
    for k in db::providers::signing_keys(&mut *tx)
        .await
        .map_err(|e| e.to_string())?
    {
        if k.key_id == st.keys().current_id() {
            continue;
        }
        let rewrapped = st
            .keys()
            .rewrap(&k.sealed_key, &signing_key_aad(&k.id))
            .map_err(|e| format!("signing key {}: {e}", k.id))?;
        db::providers::set_signing_key_sealed(&mut *tx, &k.id, &rewrapped, st.keys().current_id())
            .await
            .map_err(|e| e.to_string())?;
        n += 1;
    }
    tx.commit().await.map_err(|e| e.to_string())?;
    Ok(n)
}

/// Adds a new active signing key, prunes inactive ones older than two days (longer than any
/// temporary credential lives), and publishes the change to nodes.
pub async fn rotate_signing_key(st: &AppState) -> Result<(), String> {
    let mut tx = st.db().begin().await.map_err(|e| e.to_string())?;
    insert_signing_key(st, &mut tx)
        .await
        .map_err(|e| e.to_string())?;
    db::providers::delete_inactive_signing_keys_before(&mut *tx, st.now_ms() - 2 * 86_400_000)
        .await
        .map_err(|e| e.to_string())?;
    crate::service::commit(st, tx, true)
        .await
        .map_err(|e| e.to_string())
}
