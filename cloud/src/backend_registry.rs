//! The device registry behind the admin API: register, rotate a password, retire. Records
//! go to the store; a changed or retired password closes the device's live connections.

use chrono::{DateTime, Utc};
use shiki_proto::DeviceId;

use crate::api::{BackendError, NewRegistration, Registration};
use crate::backend_impl::CloudBackend;
use crate::store::{RegistryRecord, Write};

fn internal(e: crate::store::StoreError) -> BackendError {
    BackendError::Internal(e.to_string())
}

fn view(r: &RegistryRecord) -> Registration {
    Registration {
        id: r.id.clone(),
        tenant: r.tenant.clone(),
        created_at: r.created_at,
        created_by: r.created_by.clone(),
        credentials_at: r.credentials_at,
        retired_at: r.retired_at,
    }
}

impl CloudBackend {
    /// The registration of a device that is registered and not retired.
    fn active(&self, id: &DeviceId) -> Result<RegistryRecord, BackendError> {
        match self.store().registered(id).map_err(internal)? {
            Some(r) if r.retired_at.is_none() => Ok(r),
            _ => Err(BackendError::NotFound),
        }
    }

    async fn put(&self, record: RegistryRecord) -> Result<Registration, BackendError> {
        self.store()
            .submit(vec![Write::PutRegistry(Box::new(record.clone()))])
            .await
            .map_err(internal)?;
        Ok(view(&record))
    }

    pub(crate) async fn register_device_now(
        &self,
        new: NewRegistration,
    ) -> Result<Registration, BackendError> {
        if let Some(r) = self.store().registered(&new.id).map_err(internal)?
            && r.retired_at.is_none()
        {
            return Err(BackendError::AlreadyExists(format!(
                "device {:?}",
                new.id.as_str()
            )));
        }
        self.put(RegistryRecord {
            id: new.id,
            tenant: new.tenant,
            password_hash: Some(new.password_hash),
            created_at: new.at,
            created_by: new.by,
            credentials_at: new.at,
            retired_at: None,
        })
        .await
    }

    pub(crate) async fn set_device_password_now(
        &self,
        id: DeviceId,
        hash: String,
        at: DateTime<Utc>,
    ) -> Result<Registration, BackendError> {
        let mut record = self.active(&id)?;
        record.password_hash = Some(hash);
        record.credentials_at = at;
        let view = self.put(record).await?;
        let closed = self.sessions().close(&id);
        tracing::info!(device = %id, connections_closed = closed, "device password replaced");
        Ok(view)
    }

    pub(crate) async fn set_device_tenant_now(
        &self,
        id: DeviceId,
        tenant: Option<String>,
    ) -> Result<Registration, BackendError> {
        let mut record = self.active(&id)?;
        record.tenant = tenant;
        self.put(record).await
    }

    pub(crate) async fn retire_device_now(
        &self,
        id: DeviceId,
        at: DateTime<Utc>,
    ) -> Result<Registration, BackendError> {
        let mut record = self.active(&id)?;
        record.password_hash = None;
        record.retired_at = Some(at);
        let view = self.put(record).await?;
        let closed = self.sessions().close(&id);
        tracing::info!(device = %id, connections_closed = closed, "device retired");
        Ok(view)
    }
}
