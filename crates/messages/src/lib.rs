//! The formation production's messages, named as in the tutorial: a CSV row or REST call
//! becomes a `FormationRequest`; the router turns it into a `TrainingIrisRequest` for the
//! embedded database; the CRUD requests let the REST service read and change that table
//! through the production.

use interop::{Message, Registry};
use serde::{Deserialize, Serialize};

/// One training as read from the CSV (`id;nom;salle`) or posted to `/training/`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Formation {
    pub id: i64,
    pub nom: String,
    pub salle: String,
}

/// A formation to route to the sinks (file, embedded DB, PostgreSQL).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormationRequest {
    pub formation: Formation,
}

impl Message for FormationRequest {
    const TYPE_NAME: &'static str = "FormationRequest";
    fn example() -> Option<Self> {
        Some(FormationRequest {
            formation: Formation {
                id: 1,
                nom: "Introduction à IRIS".into(),
                salle: "Salle A".into(),
            },
        })
    }
}

/// The router's reply to a `FormationRequest`: which sinks took the row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormationResponse {
    pub id: i64,
    /// Sinks that stored the row, in the order they were called.
    pub stored_in: Vec<String>,
    /// Sinks skipped (disabled, or not asked by the PostgreSQL rule).
    pub skipped: Vec<String>,
}

impl Message for FormationResponse {
    const TYPE_NAME: &'static str = "FormationResponse";
}

/// A sink's plain acknowledgement of a written row.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormationStored {
    pub id: i64,
    /// Where it went, e.g. the file path or the table.
    pub location: String,
}

impl Message for FormationStored {
    const TYPE_NAME: &'static str = "FormationStored";
}

/// A training as the embedded database keeps it (English column names, as in IRIS).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    pub id: i64,
    pub name: String,
    pub room: String,
}

/// Insert or replace a training in the embedded database.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingIrisRequest {
    pub training: Training,
}

impl Message for TrainingIrisRequest {
    const TYPE_NAME: &'static str = "TrainingIrisRequest";
    fn example() -> Option<Self> {
        Some(TrainingIrisRequest {
            training: Training {
                id: 1,
                name: "Introduction à IRIS".into(),
                room: "Salle A".into(),
            },
        })
    }
}

/// The embedded database's reply: `flag` asks the router to also send the row to
/// PostgreSQL (the tutorial's exercise).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingIrisResponse {
    pub ok: bool,
    pub flag: bool,
}

impl Message for TrainingIrisResponse {
    const TYPE_NAME: &'static str = "TrainingIrisResponse";
}

/// List trainings, ordered by id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingListRequest {
    #[serde(default = "default_limit")]
    pub limit: i64,
    #[serde(default)]
    pub offset: i64,
}

fn default_limit() -> i64 {
    100
}

impl Message for TrainingListRequest {
    const TYPE_NAME: &'static str = "TrainingListRequest";
    fn example() -> Option<Self> {
        Some(TrainingListRequest {
            limit: 10,
            offset: 0,
        })
    }
}

/// A page of trainings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingList {
    pub trainings: Vec<Training>,
    pub total: i64,
}

impl Message for TrainingList {
    const TYPE_NAME: &'static str = "TrainingList";
}

/// Read one training.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingGetRequest {
    pub id: i64,
}

impl Message for TrainingGetRequest {
    const TYPE_NAME: &'static str = "TrainingGetRequest";
    fn example() -> Option<Self> {
        Some(TrainingGetRequest { id: 1 })
    }
}

/// Change an existing training; `found` is false when no such id exists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingUpdateRequest {
    pub training: Training,
}

impl Message for TrainingUpdateRequest {
    const TYPE_NAME: &'static str = "TrainingUpdateRequest";
    fn example() -> Option<Self> {
        Some(TrainingUpdateRequest {
            training: Training {
                id: 1,
                name: "Renamed".into(),
                room: "Salle B".into(),
            },
        })
    }
}

/// Delete one training.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingDeleteRequest {
    pub id: i64,
}

impl Message for TrainingDeleteRequest {
    const TYPE_NAME: &'static str = "TrainingDeleteRequest";
    fn example() -> Option<Self> {
        Some(TrainingDeleteRequest { id: 1 })
    }
}

/// Reply to get / update / delete: the training when found.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrainingReply {
    pub found: bool,
    pub training: Option<Training>,
}

impl Message for TrainingReply {
    const TYPE_NAME: &'static str = "TrainingReply";
}

/// Register the reply types (request types come with the hosts that accept them).
pub fn register(registry: &mut Registry) {
    registry
        .message::<FormationRequest>()
        .message::<FormationResponse>()
        .message::<FormationStored>()
        .message::<TrainingIrisRequest>()
        .message::<TrainingIrisResponse>()
        .message::<TrainingListRequest>()
        .message::<TrainingList>()
        .message::<TrainingGetRequest>()
        .message::<TrainingUpdateRequest>()
        .message::<TrainingDeleteRequest>()
        .message::<TrainingReply>();
}
