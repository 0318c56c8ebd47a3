// The API explorer: Swagger UI on this server's /openapi.json, with the bearer token the
// user pasted (sessionStorage, shared with the dashboard in the same tab). No inline
// script: the page runs under the dashboard's Content-Security-Policy.
"use strict";

const TOKEN_KEY = "taskframe.token";
const form = document.getElementById("token-form");
const input = document.getElementById("token-input");
const reason = document.getElementById("token-reason");
const status = document.getElementById("explorer-status");

function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function askForToken(why) {
  reason.textContent = why;
  form.hidden = false;
  input.focus();
}

async function load() {
  status.textContent = "";
  const headers = { Accept: "application/json" };
  const token = getToken();
  if (token) headers.Authorization = `Bearer ${token}`;
  let answer;
  try {
    answer = await fetch("/openapi.json", { headers, cache: "no-store" });
  } catch (error) {
    status.textContent = `cannot reach the server: ${error.message}`;
    return;
  }
  if (answer.status === 401 || answer.status === 403) {
    const body = await answer.json().catch(() => ({}));
    askForToken(
      `The server answered ${answer.status} ${body.title || ""}: paste a client, worker or admin token.`,
    );
    return;
  }
  if (!answer.ok) {
    status.textContent = `GET /openapi.json answered ${answer.status}`;
    return;
  }
  form.hidden = true;
  const spec = await answer.json();
  window.ui = SwaggerUIBundle({
    spec,
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // the default sends the document to a public validator
    // Calls made with "Try it out" carry the token too, unless Authorize set one.
    requestInterceptor: (request) => {
      const current = getToken();
      if (current && !request.headers.Authorization) {
        request.headers.Authorization = `Bearer ${current}`;
      }
      return request;
    },
  });
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  setToken(input.value.trim());
  input.value = "";
  load();
});
document.getElementById("token-forget").addEventListener("click", () => {
  setToken("");
  input.value = "";
  load();
});
document.getElementById("token-button").addEventListener("click", () => {
  askForToken(getToken() ? "A token is set for this tab." : "No token is set.");
});

load();
