/* The class table: re-sort and filter by band without reloading. Without JavaScript the table stays as the
   server ordered it (most in need first) and these controls stay hidden. */
(function () {
  "use strict";
  var table = document.getElementById("preview");
  var controls = document.getElementById("class-controls");
  if (!table || !controls) { return; }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var sortBy = document.getElementById("sort-by");
  var boxes = Array.prototype.slice.call(controls.querySelectorAll("input[name=show]"));
  var status = document.getElementById("shown-count");
  var words = document.getElementById("order-words");
  var defaultWords = words.textContent;
  var titleCount = document.getElementById("title-count");
  var printNote = document.getElementById("print-note");
  var defaultNote = printNote ? printNote.textContent : "";
  var bandWords = {needs_support: "needs support", uncertain: "could be either side", on_track: "on track",
    failed: "not predicted"};
  var orderWords = {
    score: "Lowest predicted score first",
    chance: "Highest chance of a score below the cut first",
    file: "In the order of the file",
    id: "By student id"
  };
  var collator = new Intl.Collator(undefined, {numeric: true, sensitivity: "base"});

  function chance(row) {
    var value = row.getAttribute("data-chance");
    return value === "" ? -1 : parseFloat(value);
  }

  function score(row) {
    var value = row.getAttribute("data-score");
    return value === "" ? Infinity : parseFloat(value);
  }

  function compare(by) {
    return function (a, b) {
      var staff = Number(a.getAttribute("data-staff")) - Number(b.getAttribute("data-staff"));
      var file = Number(a.getAttribute("data-row")) - Number(b.getAttribute("data-row"));
      if (by === "chance") { return (chance(b) - chance(a)) || file; }
      if (by === "score") { return (score(a) === score(b) ? 0 : score(a) < score(b) ? -1 : 1) || file; }
      if (by === "file") { return file; }
      if (by === "id") { return collator.compare(a.getAttribute("data-id"), b.getAttribute("data-id")) || file; }
      return staff;
    };
  }

  function apply() {
    var by = sortBy.value;
    var shown = {};
    boxes.forEach(function (box) { shown[box.value] = box.checked; });
    var sorted = rows.slice().sort(compare(by));
    var visible = 0;
    sorted.forEach(function (row) {
      var keep = shown[row.getAttribute("data-band")];
      row.hidden = !keep;
      if (keep) { visible += 1; }
      body.appendChild(row);
    });
    words.textContent = orderWords[by] || defaultWords;
    var all = visible === rows.length;
    status.textContent = all ? "Showing all " + rows.length + " students."
      : "Showing " + visible + " of " + rows.length + " students.";
    // the heading and the printout say when rows are filtered out, and which bands are shown
    titleCount.textContent = all ? rows.length + " students" : visible + " of " + rows.length + " students shown";
    if (printNote) {
      var kept = boxes.filter(function (box) { return box.checked; })
        .map(function (box) { return bandWords[box.value]; });
      printNote.textContent = all ? defaultNote : "Filtered: " + visible + " of " + rows.length +
        " students are printed (" + (kept.length ? kept.join(", ") : "no band") + "); the others are left out.";
    }
  }

  sortBy.addEventListener("change", apply);
  boxes.forEach(function (box) { box.addEventListener("change", apply); });
  controls.hidden = false;
}());
