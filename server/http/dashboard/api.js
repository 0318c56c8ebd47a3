// The JSON API of this server, with the bearer token the user pasted (kept for this tab only).

const TOKEN_KEY = "taskframe.token";

export class ApiError extends Error {
  constructor(status, body, path) {
    super((body && (body.description || body.title)) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.path = path;
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

let unauthorized = () => {};

/** Called with the ApiError of every 401 answer (the page then asks for a token). */
export function onUnauthorized(callback) {
  unauthorized = callback;
}

export async function api(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  const init = { method, headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, { title: "Server unreachable", description: String(err) }, path);
  }
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = { title: `HTTP ${response.status}`, description: text.slice(0, 200) };
    }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data, path);
    if (response.status === 401) unauthorized(error);
    throw error;
  }
  return data;
}

/** An endpoint this server may not have yet: null when it answers 404 or 405. */
export async function optional(path) {
  try {
    return await api(path);
  } catch (err) {
    if (err.status === 404 || err.status === 405) return null;
    throw err;
  }
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
