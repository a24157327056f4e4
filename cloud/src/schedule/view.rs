//! [`ScheduleView`] (the API's view of a device's schedules) from a [`ScheduleSync`].

use shiki_cloud_api::{ScheduleView, SlotView};

use super::state::ScheduleSync;

impl From<&ScheduleSync> for ScheduleView {
    fn from(s: &ScheduleSync) -> Self {
        Self {
            device_id: s.device_id().to_owned(),
            current: s.current().map(SlotView::from),
            next: s.next().map(SlotView::from),
        }
    }
}
