// The REST API from the browser: the API key (kept in sessionStorage, so it is gone when the
// tab closes), JSON requests, error envelopes as exceptions, and the OpenAPI document.

const KEY_ITEM = "efnf.apiKey";

/** An error answer of the API: its HTTP status, message and the offending field. */
export class ApiError extends Error {
  constructor(status, message, field) {
    super(message);
    this.status = status;
    this.field = field ?? null;
  }
}

export const apiKey = {
  get: () => sessionStorage.getItem(KEY_ITEM),
  set: (key) => sessionStorage.setItem(KEY_ITEM, key),
  clear: () => sessionStorage.removeItem(KEY_ITEM),
};

const listeners = { unauthorized: [] };
export function onUnauthorized(callback) {
  listeners.unauthorized.push(callback);
}

/**
 * Sends one request; `json` is sent as a JSON body, `form` as multipart. Answers the parsed
 * JSON (or a Blob when `blob` is set, null for 204); throws ApiError for any error status.
 */
export async function request(method, path, { json, form, blob = false, key } = {}) {
  const headers = { Authorization: `Bearer ${key ?? apiKey.get() ?? ""}` };
  let body;
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(json);
  } else if (form !== undefined) {
    body = form;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (error) {
    throw new ApiError(0, `the server did not answer (${error.message})`);
  }
  if (!response.ok) {
    let data = {};
    try {
      data = await response.json();
    } catch {
      // Not an error envelope (a proxy's page): the status text says enough.
    }
    const error = new ApiError(response.status, data.message || response.statusText, data.field);
    if (response.status === 401 && key === undefined) listeners.unauthorized.forEach((f) => f(error));
    throw error;
  }
  if (response.status === 204) return null;
  return blob ? response.blob() : response.json();
}

export const get = (path, options) => request("GET", path, options);
export const post = (path, json) => request("POST", path, { json });

/** `path?key=value&...` without the empty values. */
export function withQuery(path, query) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== "") params.set(name, value);
  }
  const text = params.toString();
  return text ? `${path}?${text}` : path;
}

let documentPromise = null;
/** The OpenAPI document (public, fetched once). */
export function openapi() {
  documentPromise ??= fetch("/openapi.json").then((response) => response.json());
  return documentPromise;
}

/** A component schema by name, with every `$ref` (and one-element allOf) resolved. */
export async function schema(name) {
  const document = await openapi();
  const schemas = document.components.schemas;
  const resolve = (node) => {
    if (node === null || typeof node !== "object") return node;
    if (Array.isArray(node)) return node.map(resolve);
    if (node.$ref) return resolve(schemas[node.$ref.split("/").pop()]);
    if (node.allOf && node.allOf.length === 1 && !node.properties) {
      const { allOf, ...rest } = node;
      return { ...resolve(allOf[0]), ...rest };
    }
    return Object.fromEntries(Object.entries(node).map(([k, v]) => [k, resolve(v)]));
  };
  return resolve(schemas[name]);
}

/** Whether the server has the operation (newer servers list models, delete jobs...). */
export async function hasOperation(method, path) {
  const document = await openapi();
  return Boolean(document.paths[path]?.[method.toLowerCase()]);
}

/** An authenticated image (a PNG route) as an object URL for an <img>. */
export async function imageUrl(path) {
  return URL.createObjectURL(await get(path, { blob: true }));
}
