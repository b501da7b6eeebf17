//! Diesel table definitions of the embedded database (see `migrations/sqlite`).

// `message` is a view over `message_data` (see migration 000004): read it, write
// `message_data`.
diesel::table! {
    message (id) {
        id -> BigInt,
        session_id -> BigInt,
        parent_id -> Nullable<BigInt>,
        source -> Text,
        target -> Text,
        type_name -> Text,
        kind -> Text,
        status -> Text,
        is_error -> Bool,
        error_text -> Nullable<Text>,
        created -> Text,
        processed -> Nullable<Text>,
        body -> Text,
        session_key -> Nullable<Text>,
    }
}

diesel::table! {
    event_log (id) {
        id -> BigInt,
        time -> Text,
        level -> Text,
        item -> Nullable<Text>,
        session_id -> Nullable<BigInt>,
        text -> Text,
    }
}

diesel::table! {
    message_data (id) {
        id -> BigInt,
        session_id -> BigInt,
        parent_id -> Nullable<BigInt>,
        source -> BigInt,
        target -> BigInt,
        type_name -> BigInt,
        kind -> BigInt,
        status -> BigInt,
        is_error -> Bool,
        error_text -> Nullable<Text>,
        created -> BigInt,
        processed -> Nullable<BigInt>,
        body -> Text,
        session_key -> Nullable<Text>,
    }
}

diesel::table! {
    message_name (id) {
        id -> BigInt,
        name -> Text,
    }
}
