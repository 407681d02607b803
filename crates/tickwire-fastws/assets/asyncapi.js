// A small, dependency-free renderer of an AsyncAPI 2.x document: the channels, each
// operation's messages with their payload schemas ($ref resolved) and the request ->
// reply links (`x-response`). All document text goes into the page through
// textContent, never as markup.
(function () {
  "use strict";

  var root = document.getElementById("asyncapi");
  var doc = null;

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      if (c !== null && c !== undefined) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }

  // Text with `code spans`, as CommonMark writes them; everything else stays plain text.
  function prose(tag, text, cls) {
    var node = el(tag, cls ? { class: cls } : {});
    String(text || "").split("`").forEach(function (part, i) {
      node.appendChild(i % 2 ? el("code", { text: part }) : document.createTextNode(part));
    });
    return node;
  }

  // Resolves a local JSON pointer reference such as "#/components/schemas/Bar".
  function resolve(ref) {
    if (typeof ref !== "string" || ref.indexOf("#/") !== 0) return undefined;
    return ref.slice(2).split("/").reduce(function (node, key) {
      key = decodeURIComponent(key).replace(/~1/g, "/").replace(/~0/g, "~");
      return node && Object.prototype.hasOwnProperty.call(node, key) ? node[key] : undefined;
    }, doc);
  }

  function refName(ref) {
    return String(ref).split("/").pop();
  }

  function anchor(messageId) {
    return "message-" + messageId;
  }

  function typeText(schema) {
    var parts = [];
    if (schema.type) parts.push([].concat(schema.type).join(" | "));
    if (schema.const !== undefined) parts.push("= " + JSON.stringify(schema.const));
    if (schema.enum) parts.push("one of " + schema.enum.map(function (v) { return JSON.stringify(v); }).join(", "));
    if (schema.default !== undefined) parts.push("default " + JSON.stringify(schema.default));
    return parts.join(" · ") || "any";
  }

  // A table of an object schema's properties; nested objects get nested tables.
  function schemaTable(schema, seen) {
    seen = seen || [];
    if (schema && schema.$ref) {
      if (seen.indexOf(schema.$ref) >= 0) return el("p", { text: "(recursive: " + refName(schema.$ref) + ")" });
      var target = resolve(schema.$ref);
      if (!target) return el("p", { text: "(unresolved " + schema.$ref + ")" });
      return schemaTable(target, seen.concat([schema.$ref]));
    }
    var props = (schema && schema.properties) || {};
    var required = (schema.required || []);
    // Required fields first, in the order the schema lists them (JSON objects may come
    // with their keys sorted), then the optional ones.
    var rank = function (name) { var i = required.indexOf(name); return i < 0 ? required.length : i; };
    var names = Object.keys(props).sort(function (a, b) { return rank(a) - rank(b); });
    if (!names.length) return el("p", { class: "type", text: typeText(schema || {}) });
    var rows = names.map(function (name) {
      var prop = props[name];
      var shown = prop.$ref ? (resolve(prop.$ref) || {}) : prop;
      var nested = shown.properties ? schemaTable(prop, seen) : null;
      return el("tr", {}, [
        el("td", { class: "name" }, [name, required.indexOf(name) >= 0 ? el("span", { class: "req", text: "required" }) : null]),
        el("td", {}, [
          el("div", { class: "type", text: prop.$ref ? refName(prop.$ref) + " (" + typeText(shown) + ")" : typeText(shown) }),
          shown.description ? prose("div", shown.description) : null,
          nested,
        ]),
      ]);
    });
    return el("table", {}, [
      el("thead", {}, [el("tr", {}, [el("th", { text: "Field" }), el("th", { text: "Type and description" })])]),
      el("tbody", {}, rows),
    ]);
  }

  // Which requests each reply answers: reply messageId -> [request messageIds].
  function replyIndex(messages) {
    var index = {};
    Object.keys(messages).forEach(function (id) {
      var link = messages[id]["x-response"];
      if (link && link.$ref) (index[refName(link.$ref)] = index[refName(link.$ref)] || []).push(id);
    });
    return index;
  }

  function messageCard(ref, kind, answers) {
    var msg = resolve(ref) || {};
    var id = msg.messageId || refName(ref);
    var head = el("div", { class: "head" }, [
      el("span", { class: "badge " + kind, text: kind === "pub" ? "client → server" : "server → client" }),
      el("h3", { text: id }),
    ].concat((msg.tags || []).map(function (t) { return el("span", { class: "tag", text: t.name }); })));
    var card = el("section", { class: "op", id: anchor(id) }, [head]);
    if (msg.title) card.appendChild(el("div", { class: "summary", text: msg.title + (msg.summary ? " — " + msg.summary : "") }));
    if (msg.description) card.appendChild(prose("p", msg.description));
    var reply = msg["x-response"] && msg["x-response"].$ref;
    if (reply) {
      var replyId = refName(reply);
      card.appendChild(el("p", { class: "link" }, ["Reply: ", el("a", { href: "#" + anchor(replyId), text: replyId })]));
    }
    (answers[id] || []).forEach(function (req) {
      card.appendChild(el("p", { class: "link" }, ["In reply to: ", el("a", { href: "#" + anchor(req), text: req })]));
    });
    if (msg.payload) card.appendChild(schemaTable(msg.payload));
    (msg.examples || []).forEach(function (ex) {
      if (ex.payload === undefined) return;
      card.appendChild(el("details", { open: "" }, [
        el("summary", { text: "Example" + (ex.name ? ": " + ex.name : "") }),
        el("pre", { text: JSON.stringify(ex.payload, null, 2) }),
      ]));
    });
    return card;
  }

  function operation(op, kind, answers, heading) {
    var refs = (op.message && (op.message.oneOf || [op.message])) || [];
    var out = [el("h2", { text: heading + " (" + (kind === "pub" ? "publish" : "subscribe") + ")" })];
    if (op.summary) out.push(prose("p", op.summary));
    refs.forEach(function (m) { if (m && m.$ref) out.push(messageCard(m.$ref, kind, answers)); });
    return out;
  }

  function render() {
    var info = doc.info || {};
    var messages = (doc.components && doc.components.messages) || {};
    var answers = replyIndex(messages);
    document.title = (info.title || "AsyncAPI") + " – AsyncAPI";
    root.textContent = "";
    root.appendChild(el("header", {}, [
      el("h1", { text: info.title || "AsyncAPI" }),
      el("div", { class: "meta" }, [
        el("span", { text: "version " + (info.version || "?") }),
        el("span", { text: "AsyncAPI " + (doc.asyncapi || "?") }),
        el("span", { text: doc.defaultContentType || "" }),
      ]),
      info.description ? prose("p", info.description) : null,
    ]));
    Object.keys(doc.channels || {}).forEach(function (name) {
      var channel = doc.channels[name];
      root.appendChild(el("h2", { text: "Channel " + name }));
      if (channel.description) root.appendChild(prose("p", channel.description));
      if (channel.publish) operation(channel.publish, "pub", answers, "Client → server").forEach(function (n) { root.appendChild(n); });
      if (channel.subscribe) operation(channel.subscribe, "sub", answers, "Server → client").forEach(function (n) { root.appendChild(n); });
    });
    var schemas = (doc.components && doc.components.schemas) || {};
    root.appendChild(el("h2", { text: "Schemas" }));
    Object.keys(schemas).forEach(function (name) {
      root.appendChild(el("details", { class: "op", id: "schema-" + name }, [
        el("summary", { text: name }),
        schemas[name].description ? prose("p", schemas[name].description) : null,
        schemaTable(schemas[name], ["#/components/schemas/" + name]),
      ]));
    });
    if (location.hash) {
      var target = document.getElementById(location.hash.slice(1));
      if (target) target.scrollIntoView();
    }
  }

  fetch(root.getAttribute("data-src"), { headers: { Accept: "application/json" } })
    .then(function (res) {
      if (!res.ok) throw new Error("HTTP " + res.status);
      return res.json();
    })
    .then(function (json) { doc = json; render(); })
    .catch(function (err) {
      root.textContent = "";
      root.appendChild(el("p", { id: "error", text: "Could not load the AsyncAPI document: " + err.message }));
    });
})();
