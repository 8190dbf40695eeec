// HTTPS requests to the API server over libcurl: CA verification, bearer token (re-read from
// its file before each request), client certificates, and a line-by-line streamed GET.
#include <curl/curl.h>

#include <fstream>
#include <mutex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "agent/k8s/k8s.h"

namespace ferry::k8s {

namespace {

std::string read_token(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw K8sError("cannot read the token file " + path);
  std::stringstream s;
  s << in.rdbuf();
  std::string t = s.str();
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  return t;
}

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Headers = std::unique_ptr<curl_slist, SlistDeleter>;

// What one transfer collects from libcurl's callbacks.
struct Transfer {
  CURL* curl = nullptr;
  std::string body;           // non-streamed body, or a non-200 streamed body (bounded)
  std::string partial_line;   // streamed: the line not yet ended by '\n'
  const std::function<bool(const std::string&)>* on_line = nullptr;
  const std::function<bool()>* cancelled = nullptr;
  size_t max_line = 0;
  bool line_too_long = false;
  bool stopped = false;       // on_line or cancelled asked to stop: not an error
};

constexpr size_t kMaxErrorBody = 1u << 20;

size_t on_body(char* data, size_t size, size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const size_t len = size * n;
  if (!t->on_line) {
    t->body.append(data, len);
    return len;
  }
  long status = 0;
  curl_easy_getinfo(t->curl, CURLINFO_RESPONSE_CODE, &status);
  if (status != 200) {
    if (t->body.size() < kMaxErrorBody) t->body.append(data, std::min(len, kMaxErrorBody - t->body.size()));
    return len;
  }
  std::string_view chunk(data, len);
  while (!chunk.empty()) {
    const size_t nl = chunk.find('\n');
    t->partial_line.append(chunk.substr(0, nl));
    if (t->partial_line.size() > t->max_line) {
      t->line_too_long = true;
      return 0;  // aborts the transfer
    }
    if (nl == std::string_view::npos) break;
    chunk.remove_prefix(nl + 1);
    std::string line;
    line.swap(t->partial_line);  // the buffer never keeps more than one line
    if (!line.empty() && !(*t->on_line)(line)) {
      t->stopped = true;
      return 0;
    }
  }
  return len;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* t = static_cast<Transfer*>(user);
  if (t->cancelled && *t->cancelled && (*t->cancelled)()) {
    t->stopped = true;
    return 1;
  }
  return 0;
}

// A transport failure in words a user can act on.
K8sError transport_error(const ClientConfig& c, const std::string& path, CURLcode code, const char* detail) {
  const std::string what = std::string(detail && *detail ? detail : curl_easy_strerror(code));
  const std::string target = "Kubernetes API " + c.server + " (" + c.origin + "): GET " + path + ": ";
  switch (code) {
    case CURLE_PEER_FAILED_VERIFICATION:
      return K8sError(target + "the server's TLS certificate is not trusted by the configured CA (" +
                          (c.ca_file.empty() ? std::string("certificate-authority-data") : c.ca_file) + "): " + what,
                      false);
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
      return K8sError(target + "cannot load the CA or client certificate: " + what, false);
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
      return K8sError(target + "cannot connect: " + what);
    case CURLE_OPERATION_TIMEDOUT:
      return K8sError(target + "timed out: " + what);
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
      return K8sError(target + "the connection was dropped: " + what);
    default:
      return K8sError(target + what);
  }
}

}  // namespace

struct ApiClient::Impl {
  CURL* curl = nullptr;
  ~Impl() {
    if (curl) curl_easy_cleanup(curl);
  }
};

ApiClient::ApiClient(ClientConfig config) : config_(std::move(config)), impl_(std::make_unique<Impl>()) {
  static std::once_flag init;
  std::call_once(init, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  impl_->curl = curl_easy_init();
  if (!impl_->curl) throw K8sError("libcurl: cannot create a handle");
}

ApiClient::~ApiClient() = default;

HttpResponse ApiClient::get(const std::string& path, std::chrono::seconds timeout) {
  HttpResponse r;
  r.status = stream(path, timeout, {}, {}, &r.body);
  return r;
}

long ApiClient::stream(const std::string& path, std::chrono::seconds timeout,
                       const std::function<bool(const std::string&)>& on_line,
                       const std::function<bool()>& cancelled, std::string* error_body, size_t max_line) {
  CURL* curl = impl_->curl;
  curl_easy_reset(curl);  // keeps the connection cache: the next request reuses the connection
  Transfer t;
  t.curl = curl;
  t.on_line = on_line ? &on_line : nullptr;
  t.cancelled = cancelled ? &cancelled : nullptr;
  t.max_line = max_line;

  const std::string url = config_.server + path;
  Headers headers;
  auto add_header = [&](const std::string& h) { headers.reset(curl_slist_append(headers.release(), h.c_str())); };
  add_header("Accept: application/json");
  std::string token = config_.token_file.empty() ? config_.token : read_token(config_.token_file);
  if (!token.empty()) add_header("Authorization: Bearer " + token);

  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT, static_cast<long>(timeout.count()));
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "ferry-agent/" FERRY_VERSION);
  // gzip for whole bodies (lists); a watch stream stays uncompressed so each event arrives at once.
  if (!on_line) curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);
  curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);  // notices a peer that vanished without FIN

  curl_blob ca_blob{}, cert_blob{}, key_blob{};
  if (config_.insecure) {
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!config_.ca_data.empty()) {
    ca_blob = {config_.ca_data.data(), config_.ca_data.size(), CURL_BLOB_NOCOPY};
    curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &ca_blob);
  } else if (!config_.ca_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_CAINFO, config_.ca_file.c_str());
  }
  if (!config_.client_cert_data.empty()) {
    cert_blob = {config_.client_cert_data.data(), config_.client_cert_data.size(), CURL_BLOB_NOCOPY};
    curl_easy_setopt(curl, CURLOPT_SSLCERT_BLOB, &cert_blob);
  } else if (!config_.client_cert_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLCERT, config_.client_cert_file.c_str());
  }
  if (!config_.client_key_data.empty()) {
    key_blob = {config_.client_key_data.data(), config_.client_key_data.size(), CURL_BLOB_NOCOPY};
    curl_easy_setopt(curl, CURLOPT_SSLKEY_BLOB, &key_blob);
  } else if (!config_.client_key_file.empty()) {
    curl_easy_setopt(curl, CURLOPT_SSLKEY, config_.client_key_file.c_str());
  }

  CURLcode code = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  if (t.line_too_long)
    throw K8sError("Kubernetes API " + config_.server + ": GET " + path + ": a line longer than " +
                   std::to_string(max_line) + " bytes; dropped the stream");
  if (code != CURLE_OK && !t.stopped) throw transport_error(config_, path, code, errbuf);
  if (error_body) *error_body = std::move(t.body);
  return status;
}

std::string describe_http_error(const ClientConfig& config, const std::string& path, const HttpResponse& r) {
  std::string out = "Kubernetes API " + config.server + " (" + config.origin + "): GET " + path + ": HTTP " +
                    std::to_string(r.status);
  nlohmann::json body = nlohmann::json::parse(r.body, nullptr, false);
  if (body.is_object() && body.value("kind", "") == "Status" && body.contains("message") &&
      body["message"].is_string())
    out += ": " + body["message"].get<std::string>();
  if (r.status == 401)
    out += " (the bearer token was rejected: check the token" +
           (config.token_file.empty() ? std::string() : " in " + config.token_file) + ")";
  else if (r.status == 403)
    out += " (the account lacks RBAC permission to list/watch this resource)";
  return out;
}

}  // namespace ferry::k8s
