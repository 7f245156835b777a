//! Wires the pieces together and runs the listeners until Ctrl-C / SIGTERM.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, SystemTime},
};

use axum::{
    http::{HeaderMap, StatusCode, Uri},
    middleware,
    response::{IntoResponse, Redirect},
    Router,
};
use axum_server::{tls_rustls::RustlsConfig, Handle};

use crate::{
    access::{self, Access},
    config::Config,
    ice::IceConfig,
    metrics::{self, Metrics},
    recordings::{self, Recordings},
    signaling::{self, Hub, SignalingConfig},
    tls::{self, CertSource},
    turn,
    web::{self, AppState},
};

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Turn(#[from] turn::TurnError),
    #[error(transparent)]
    Sfu(#[from] sfu::SfuError),
    #[error(transparent)]
    Recordings(#[from] recordings::StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub async fn serve(config: Config) -> Result<(), ServerError> {
    let hub = Hub::new(SignalingConfig {
        room_capacity: config.room_capacity,
        rate_limit: config.rate_limit,
    });
    let (socket_io_layer, io) = signaling::socketio::builder(config.rate_limit).build_layer();
    let access = Access::new(config.access.clone());
    signaling::attach(&io, hub.clone(), access.clone());
    let (sfu, live) = crate::sfu_signaling::start(&io, &config, access.clone())?;

    for missing in web::missing_vendor_files(&config.public_dir) {
        tracing::warn!(
            "{} is missing: the pages cannot load it. Run `npm ci --prefix {}`.",
            missing.display(),
            config.public_dir.display()
        );
    }
    let turn = turn::start(
        &config.turn,
        config.sfu.net.public_ip,
        Some(sfu.media_addr()),
    )
    .await?;
    let ice = IceConfig {
        stun_urls: config.stun_urls.clone(),
        turn: turn.ice.clone(),
    };
    let recordings = Recordings::open(&config.recordings, access.clone())?;
    recordings.spawn_sweeper();
    let app = web::router(
        &config.public_dir,
        socket_io_layer,
        AppState {
            hub: hub.clone(),
            ice: Arc::new(ice),
            public_host: config.public_host.as_deref().map(Arc::from),
        },
    )
    .merge(web::common_headers(
        crate::sfu_signaling::routes(sfu.clone())
            .merge(recordings::routes(recordings))
            .merge(crate::live::http::routes(live.clone()))
            .merge(recordings::room::http::routes(
                recordings::room::http::RoomFiles::new(&config.recordings.dir),
            ))
            .merge(metrics::routes(Metrics {
                hub,
                sfu,
                turn: turn.server.as_ref().map(|relay| relay.metrics_source()),
                live,
                started: SystemTime::now(),
            })),
    ))
    .layer(middleware::from_fn_with_state(access, access::guard));
    if config.access.operator_token.is_none() {
        tracing::info!("operator endpoints (/api/rooms, /api/stats, /metrics, /api/room-recordings) are off: set [access] operator_token to use them");
    }

    let handle = Handle::new();
    tokio::spawn(shutdown_on_signal(handle.clone()));
    let listener = bind(config.listen)?;
    let local = listener.local_addr().unwrap_or(config.listen);
    if config.access.auth_secret.is_none() && !local.ip().is_loopback() {
        tracing::warn!(
            "no auth secret: anyone who can reach {local} can join any room and use the TURN relay; \
             set [access] auth_secret and give your users tokens (docs/security.md)"
        );
    }
    let listen_error = |source| ServerError::Listen {
        addr: local,
        source,
    };
    // The peer address: the ICE-servers budget is per client address.
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    // The two branches build different server types, hence the repetition of `serve`.
    let served = if config.plain_http {
        announce("http", local);
        axum_server::from_tcp(listener)
            .map_err(listen_error)?
            .handle(handle)
            .serve(service)
            .await
    } else {
        let tls = tls_config(&config)?;
        if let Some(port) = config.http_redirect_port {
            spawn_redirect(SocketAddr::new(config.listen.ip(), port), local.port())?;
        }
        announce("https", local);
        axum_server::from_tcp_rustls(listener, tls)
            .map_err(listen_error)?
            .handle(handle)
            .serve(service)
            .await
    };
    turn::stop(turn).await;
    served.map_err(listen_error)
}

fn bind(addr: SocketAddr) -> Result<std::net::TcpListener, ServerError> {
    let listen_error = |source| ServerError::Listen { addr, source };
    let listener = std::net::TcpListener::bind(addr).map_err(listen_error)?;
    listener.set_nonblocking(true).map_err(listen_error)?;
    Ok(listener)
}

fn tls_config(config: &Config) -> Result<RustlsConfig, ServerError> {
    let material = tls::load_or_generate(
        config.cert.as_deref(),
        config.key.as_deref(),
        &config.cert_dir,
    )?;
    let cert = material.cert_path.display();
    match &material.source {
        CertSource::Generated { names } => tracing::info!(
            %cert,
            "generated a self-signed certificate for {}; browsers will ask you to accept it once",
            names.join(", ")
        ),
        CertSource::Reused => tracing::info!(%cert, "using the development certificate"),
        CertSource::Given => tracing::info!(%cert, "using the given certificate"),
    }
    Ok(RustlsConfig::from_config(material.config))
}

/// Prints where to point a browser.
fn announce(scheme: &str, local: SocketAddr) {
    let port = local.port();
    if local.ip().is_unspecified() {
        let host = gethostname::gethostname().into_string().unwrap_or_default();
        tracing::info!("listening on {local}: open {scheme}://localhost:{port}/ (or {scheme}://{host}:{port}/ from another machine) in two browsers and join the same room");
    } else {
        tracing::info!(
            "listening on {local}: open {scheme}://{local}/ in two browsers and join the same room"
        );
    }
}

fn spawn_redirect(addr: SocketAddr, https_port: u16) -> Result<(), ServerError> {
    let listener = bind(addr)?;
    let redirect = move |headers: HeaderMap, uri: Uri| async move {
        match web::request_host(&uri, &headers) {
            Some(host) => {
                let path = uri.path_and_query().map_or("/", |p| p.as_str());
                let host = if host.contains(':') {
                    format!("[{host}]")
                } else {
                    host.to_owned()
                };
                let port = if https_port == 443 {
                    String::new()
                } else {
                    format!(":{https_port}")
                };
                Redirect::permanent(&format!("https://{host}{port}{path}")).into_response()
            }
            None => (StatusCode::BAD_REQUEST, "missing or invalid Host header").into_response(),
        }
    };
    let app = Router::new().fallback(redirect);
    tracing::info!("redirecting http://{addr} to HTTPS");
    tokio::spawn(async move {
        let server = match axum_server::from_tcp(listener) {
            Ok(server) => server,
            Err(error) => return tracing::error!(%error, "HTTP redirect listener failed"),
        };
        if let Err(error) = server.serve(app.into_make_service()).await {
            tracing::error!(%error, "HTTP redirect listener failed");
        }
    });
    Ok(())
}

async fn shutdown_on_signal(handle: Handle<SocketAddr>) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    tracing::info!("shutting down");
    handle.graceful_shutdown(Some(Duration::from_secs(2)));
}
