/// What a user is at school.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum Role {
    Unspecified,
    Student,
    Teacher,
}

impl Role {
    /// The value with protobuf number `number`; unknown numbers become the zero value.
    pub fn from_number(number: i32) -> Self {
        match number {
            1 => Self::Student,
            2 => Self::Teacher,
            _ => Self::Unspecified,
        }
    }

    /// The protobuf number.
    pub fn number(self) -> i32 {
        match self {
            Self::Unspecified => 0,
            Self::Student => 1,
            Self::Teacher => 2,
        }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SignupRequest {
    pub username: String,
    pub password: String,
    pub role: Role,
}

impl From<super::SignupRequest> for SignupRequest {
    fn from(m: super::SignupRequest) -> Self {
        Self {
            username: m.username,
            password: m.password,
            role: Role::from_number(m.role),
        }
    }
}

impl From<SignupRequest> for super::SignupRequest {
    fn from(r: SignupRequest) -> Self {
        Self {
            username: r.username,
            password: r.password,
            role: r.role.number(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SignupReply {
    pub user_id: i64,
}

impl From<super::SignupReply> for SignupReply {
    fn from(m: super::SignupReply) -> Self {
        Self { user_id: m.user_id }
    }
}

impl From<SignupReply> for super::SignupReply {
    fn from(r: SignupReply) -> Self {
        Self { user_id: r.user_id }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

impl From<super::LoginRequest> for LoginRequest {
    fn from(m: super::LoginRequest) -> Self {
        Self {
            username: m.username,
            password: m.password,
        }
    }
}

impl From<LoginRequest> for super::LoginRequest {
    fn from(r: LoginRequest) -> Self {
        Self {
            username: r.username,
            password: r.password,
        }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct LoginReply {
    pub user_id: i64,
    pub role: Role,
}

impl From<super::LoginReply> for LoginReply {
    fn from(m: super::LoginReply) -> Self {
        Self {
            user_id: m.user_id,
            role: Role::from_number(m.role),
        }
    }
}

impl From<LoginReply> for super::LoginReply {
    fn from(r: LoginReply) -> Self {
        Self {
            user_id: r.user_id,
            role: r.role.number(),
        }
    }
}

/// A postal address (a nested message).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Address {
    pub city: String,
    pub street: Option<String>,
}

impl From<super::Address> for Address {
    fn from(m: super::Address) -> Self {
        Self {
            city: m.city,
            street: m.street,
        }
    }
}

impl From<Address> for super::Address {
    fn from(r: Address) -> Self {
        Self {
            city: r.city,
            street: r.street,
        }
    }
}

/// A user's profile: one field of each kind.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Profile {
    pub user_id: i64,
    pub display_name: String,
    pub role: Role,
    pub nickname: Option<String>,
    pub avatar: Vec<u8>,
    pub tags: Vec<String>,
    pub address: Option<Address>,
    pub previous_addresses: Vec<Address>,
    pub updated_at: Option<std::time::SystemTime>,
    pub score: f64,
    pub verified: bool,
    pub age: u32,
    pub counters: std::collections::HashMap<String, i64>,
    pub past_roles: Vec<Role>,
}

impl From<super::Profile> for Profile {
    fn from(m: super::Profile) -> Self {
        Self {
            user_id: m.user_id,
            display_name: m.display_name,
            role: Role::from_number(m.role),
            nickname: m.nickname,
            avatar: m.avatar,
            tags: m.tags,
            address: m.address.map(Into::into),
            previous_addresses: m.previous_addresses.into_iter().map(Into::into).collect(),
            updated_at: m.updated_at.map(fluxon_bindings::glue::system_time),
            score: m.score,
            verified: m.verified,
            age: m.age,
            counters: m.counters.into_iter().collect(),
            past_roles: m.past_roles.into_iter().map(Role::from_number).collect(),
        }
    }
}

impl From<Profile> for super::Profile {
    fn from(r: Profile) -> Self {
        Self {
            user_id: r.user_id,
            display_name: r.display_name,
            role: r.role.number(),
            nickname: r.nickname,
            avatar: r.avatar,
            tags: r.tags,
            address: r.address.map(Into::into),
            previous_addresses: r.previous_addresses.into_iter().map(Into::into).collect(),
            updated_at: r.updated_at.map(fluxon_bindings::glue::timestamp),
            score: r.score,
            verified: r.verified,
            age: r.age,
            counters: r.counters.into_iter().collect(),
            past_roles: r.past_roles.into_iter().map(Role::number).collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SlowRequest {
    pub millis: u64,
    pub text: String,
}

impl From<super::SlowRequest> for SlowRequest {
    fn from(m: super::SlowRequest) -> Self {
        Self {
            millis: m.millis,
            text: m.text,
        }
    }
}

impl From<SlowRequest> for super::SlowRequest {
    fn from(r: SlowRequest) -> Self {
        Self {
            millis: r.millis,
            text: r.text,
        }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SlowReply {
    pub text: String,
}

impl From<super::SlowReply> for SlowReply {
    fn from(m: super::SlowReply) -> Self {
        Self { text: m.text }
    }
}

impl From<SlowReply> for super::SlowReply {
    fn from(r: SlowReply) -> Self {
        Self { text: r.text }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct BroadcastRequest {
    pub text: String,
}

impl From<super::BroadcastRequest> for BroadcastRequest {
    fn from(m: super::BroadcastRequest) -> Self {
        Self { text: m.text }
    }
}

impl From<BroadcastRequest> for super::BroadcastRequest {
    fn from(r: BroadcastRequest) -> Self {
        Self { text: r.text }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct BroadcastReply {
    /// What the client's handler answered.
    pub answer: String,
}

impl From<super::BroadcastReply> for BroadcastReply {
    fn from(m: super::BroadcastReply) -> Self {
        Self { answer: m.answer }
    }
}

impl From<BroadcastReply> for super::BroadcastReply {
    fn from(r: BroadcastReply) -> Self {
        Self { answer: r.answer }
    }
}

/// What the server tells a client.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Notice {
    pub text: String,
    pub sent_at: Option<std::time::SystemTime>,
}

impl From<super::Notice> for Notice {
    fn from(m: super::Notice) -> Self {
        Self {
            text: m.text,
            sent_at: m.sent_at.map(fluxon_bindings::glue::system_time),
        }
    }
}

impl From<Notice> for super::Notice {
    fn from(r: Notice) -> Self {
        Self {
            text: r.text,
            sent_at: r.sent_at.map(fluxon_bindings::glue::timestamp),
        }
    }
}

#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct NoticeAck {
    pub reply: String,
}

impl From<super::NoticeAck> for NoticeAck {
    fn from(m: super::NoticeAck) -> Self {
        Self { reply: m.reply }
    }
}

impl From<NoticeAck> for super::NoticeAck {
    fn from(r: NoticeAck) -> Self {
        Self { reply: r.reply }
    }
}

/// The school API.
#[derive(Debug, uniffi::Object)]
pub struct SchoolClient {
    inner: super::SchoolClient,
}

#[uniffi::export(async_runtime = "tokio")]
impl SchoolClient {
    /// A client calling over `client`'s connection.
    #[uniffi::constructor]
    pub fn new(client: std::sync::Arc<fluxon_bindings::FluxonClient>) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self {
            inner: super::SchoolClient::new(client.connection().clone()),
        })
    }

    /// Creates an account and logs the session in.
    #[uniffi::method(default(options = None))]
    pub async fn signup(
        &self,
        request: SignupRequest,
        options: Option<fluxon_bindings::CallOptions>,
    ) -> Result<SignupReply, fluxon_bindings::FluxonError> {
        let options = options.map(Into::into).unwrap_or_default();
        Ok(self.inner.signup_with(request.into(), options).await?.into())
    }

    /// Logs the session in.
    #[uniffi::method(default(options = None))]
    pub async fn login(
        &self,
        request: LoginRequest,
        options: Option<fluxon_bindings::CallOptions>,
    ) -> Result<LoginReply, fluxon_bindings::FluxonError> {
        let options = options.map(Into::into).unwrap_or_default();
        Ok(self.inner.login_with(request.into(), options).await?.into())
    }

    /// Stores the caller's profile and returns it as stored (with `updated_at` set).
    #[uniffi::method(default(options = None))]
    pub async fn update_profile(
        &self,
        request: Profile,
        options: Option<fluxon_bindings::CallOptions>,
    ) -> Result<Profile, fluxon_bindings::FluxonError> {
        let options = options.map(Into::into).unwrap_or_default();
        Ok(self
            .inner
            .update_profile_with(request.into(), options)
            .await?
            .into())
    }

    /// The caller's profile.
    #[uniffi::method(default(options = None))]
    pub async fn me(
        &self,
        options: Option<fluxon_bindings::CallOptions>,
    ) -> Result<Profile, fluxon_bindings::FluxonError> {
        let options = options.map(Into::into).unwrap_or_default();
        Ok(self.inner.me_with((), options).await?.into())
    }

    /// Waits `millis`, then echoes `text`.
    #[uniffi::method(default(options = None))]
    pub async fn slow(
        &self,
        request: SlowRequest,
        options: Option<fluxon_bindings::CallOptions>,
    ) -> Result<SlowReply, fluxon_bindings::FluxonError> {
        let options = options.map(Into::into).unwrap_or_default();
        Ok(self.inner.slow_with(request.into(), options).await?.into())
    }

    /// Sends `text` to the caller's device through SchoolEvents and returns its answer.
    #[uniffi::method(default(options = None))]
    pub async fn broadcast(
        &self,
        request: BroadcastRequest,
        options: Option<fluxon_bindings::CallOptions>,
    ) -> Result<BroadcastReply, fluxon_bindings::FluxonError> {
        let options = options.map(Into::into).unwrap_or_default();
        Ok(self.inner.broadcast_with(request.into(), options).await?.into())
    }
}

fluxon_bindings::reverse_error!(
    /// The status a `SchoolEventsHandler` method raises to refuse a reverse call.
    SchoolEventsError
);

/// What the server calls on clients. Implement it in Kotlin, Swift or Python and pass
/// `schoolEventsService(handler)` to `FluxonClient.connect`.
#[uniffi::export(foreign)]
#[async_trait::async_trait]
pub trait SchoolEventsHandler: Send + Sync {
    /// Shows a notice; the client answers.
    async fn notify(&self, request: Notice) -> Result<NoticeAck, SchoolEventsError>;
}

struct SchoolEventsAdapter(std::sync::Arc<dyn SchoolEventsHandler>);

impl super::SchoolEventsHandler for SchoolEventsAdapter {
    async fn notify(
        &self,
        request: super::Notice,
    ) -> Result<super::NoticeAck, fluxon_client::Status> {
        match self.0.notify(request.into()).await {
            Ok(reply) => Ok(reply.into()),
            Err(error) => Err(error.into()),
        }
    }
}

/// The reverse-call handlers of `school.SchoolEvents`, answered by `handler`: pass them to
/// `FluxonClient.connect`.
#[uniffi::export]
pub fn school_events_service(
    handler: std::sync::Arc<dyn SchoolEventsHandler>,
) -> std::sync::Arc<fluxon_bindings::ReverseService> {
    fluxon_bindings::ReverseService::from_router(super::school_events_reverse_router(
        std::sync::Arc::new(SchoolEventsAdapter(handler)),
    ))
}
