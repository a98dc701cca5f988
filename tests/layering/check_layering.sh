#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-3.0-or-later
# Layering check (architecture.md "Layers and targets"): dependencies point ui -> app -> engine.
#   1. engine/ includes no Qt header and its CMake files use no Qt;
#   2. the engine's public headers (engine/include/) include no CUDA header;
#   3. the quire_app sources (app/, except app/main.cpp, the composition root) include no QtWidgets header,
#      and the quire_app target links no Qt6::Widgets.
# Usage: check_layering.sh --root SRC [--qt-headers DIR] [--app-links "a;b;c"]
#        check_layering.sh --self-check [--qt-headers DIR]   (plants violations in a scratch tree; each must fail)
# --qt-headers is Qt's include root (e.g. /usr/include/x86_64-linux-gnu/qt6): header names are read from its
# Qt*/ folders, so <qstring.h> or <QWidget> are recognised exactly, without guessing from the name.
set -uo pipefail

root="" qt_headers="" app_links="" self_check=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root=$2; shift 2 ;;
    --qt-headers) qt_headers=$2; shift 2 ;;
    --app-links) app_links=$2; shift 2 ;;
    --self-check) self_check=1; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done

SRC_EXT='\.(h|hh|hpp|hxx|c|cc|cpp|cxx|cu|cuh|inl|ipp)$'
INCLUDE_RE='[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]([^>"]+)[>"]'
# CUDA headers: the runtime/driver/library APIs and device-side headers.
CUDA_RE='^(cuda[A-Za-z0-9_]*\.h|cuda/.*|cuda_[^/]*|cublas[A-Za-z0-9_]*\.h|cublasLt\.h|cudnn[^/]*|curand[^/]*|cusparse[^/]*|cufft[^/]*|cusolver[^/]*|nvrtc\.h|nvtx3?/.*|nvToolsExt\.h|cub/.*|thrust/.*|cooperative_groups.*|mma\.h|.*\.cuh)$'
# Fallback when Qt's headers are not given: Qt module folders and Qt's CamelCase class headers.
QT_GENERIC_RE='^(Qt[A-Za-z0-9]*/.*|Qt[A-Z][A-Za-z0-9]*|Q[A-Z][A-Za-z0-9]*)$'
WIDGETS_FALLBACK="QApplication QWidget QMainWindow QDialog QMessageBox QFileDialog QLabel QPushButton QLineEdit
QTextEdit QPlainTextEdit QScrollArea QAbstractScrollArea QScrollBar QGraphicsView QGraphicsScene QStyle QMenu
QMenuBar QToolBar QToolButton QStatusBar QTreeView QListView QTableView QAbstractItemView QStyledItemDelegate
QInputDialog QProgressDialog QProgressBar QSplitter QBoxLayout QVBoxLayout QHBoxLayout QGridLayout QFormLayout
QLayout QCheckBox QComboBox QSpinBox QSlider QTabWidget QDockWidget QFrame QSystemTrayIcon QCompleter
QColorDialog QFontDialog QWizard QStackedWidget QRubberBand QSizePolicy QGroupBox QRadioButton QAbstractButton"

declare -A QT_NAMES=() WIDGETS_NAMES=()
load_qt_names() {
  local dir=$1 mod f
  [ -d "$dir" ] || { echo "layering: Qt header folder $dir not found" >&2; exit 2; }
  for mod in "$dir"/Qt*/; do
    mod=${mod%/}
    for f in "$mod"/*; do
      [ -f "$f" ] || continue
      QT_NAMES[${f##*/}]=1
      [ "${mod##*/}" = QtWidgets ] && WIDGETS_NAMES[${f##*/}]=1
    done
  done
  [ ${#WIDGETS_NAMES[@]} -gt 0 ] || { echo "layering: no QtWidgets headers under $dir" >&2; exit 2; }
}
if [ -n "$qt_headers" ]; then
  load_qt_names "$qt_headers"
else
  for w in $WIDGETS_FALLBACK; do WIDGETS_NAMES[$w]=1; done
fi

is_qt_header() {  # is_qt_header <include path>
  local inc=$1 base=${1##*/}
  [[ $inc =~ ^Qt[A-Za-z0-9]*/ ]] && return 0
  if [ ${#QT_NAMES[@]} -gt 0 ]; then
    [ -n "${QT_NAMES[$inc]:-}" ] && return 0
  fi
  [[ $inc =~ $QT_GENERIC_RE ]]
}
is_widgets_header() {
  local inc=$1 base=${1##*/}
  [[ $inc =~ ^QtWidgets(/|$) ]] && return 0
  [[ $inc == */* ]] && return 1  # another module's folder (QtGui/QImage) or a project path
  [ -n "${WIDGETS_NAMES[$inc]:-}" ]
}

# includes <file>: prints "<line>:<included path>" for each #include in the file.
includes() {
  grep -n -E "^$INCLUDE_RE" "$1" 2>/dev/null | sed -E "s/^([0-9]+):$INCLUDE_RE.*/\1:\2/"
}

# check_tree <root>: prints one line per violation; returns the number found (capped at 100).
check_tree() {
  local r=$1 n=0 f line inc rel
  if [ -d "$r/engine" ]; then
    while IFS= read -r -d '' f; do
      rel=${f#"$r"/}
      while IFS=: read -r line inc; do
        if is_qt_header "$inc"; then echo "engine includes Qt: $rel:$line: <$inc>"; n=$((n + 1)); fi
      done < <(includes "$f")
    done < <(find "$r/engine" -type f -regextype posix-extended -regex ".*$SRC_EXT" -print0)
    while IFS= read -r -d '' f; do
      rel=${f#"$r"/}
      while IFS= read -r line; do
        echo "engine CMake uses Qt: $rel:$line"; n=$((n + 1))
      done < <(grep -n -E '(Qt[56]::|find_package\([[:space:]]*Qt|qt_add_|qt6_)' "$f" | cut -d: -f1)
    done < <(find "$r/engine" -type f \( -name CMakeLists.txt -o -name '*.cmake' \) -print0)
  fi
  if [ -d "$r/engine/include" ]; then
    while IFS= read -r -d '' f; do
      rel=${f#"$r"/}
      while IFS=: read -r line inc; do
        if [[ $inc =~ $CUDA_RE ]]; then echo "public engine header includes CUDA: $rel:$line: <$inc>"; n=$((n + 1)); fi
      done < <(includes "$f")
    done < <(find "$r/engine/include" -type f -print0)
  fi
  if [ -d "$r/app" ]; then
    while IFS= read -r -d '' f; do
      rel=${f#"$r"/}
      [ "$rel" = app/main.cpp ] && continue
      while IFS=: read -r line inc; do
        if is_widgets_header "$inc"; then echo "quire_app includes QtWidgets: $rel:$line: <$inc>"; n=$((n + 1)); fi
      done < <(includes "$f")
    done < <(find "$r/app" -type f -regextype posix-extended -regex ".*$SRC_EXT" -print0)
  fi
  return $((n > 100 ? 100 : n))
}

check_links() {  # check_links "<;-list>": quire_app's direct link libraries
  local n=0 item
  IFS=';' read -r -a items <<<"$1"
  for item in "${items[@]}"; do
    if [[ $item =~ Widgets ]]; then echo "quire_app links QtWidgets: $item"; n=$((n + 1)); fi
  done
  return $n
}

if [ $self_check -eq 1 ]; then
  tmp=$(mktemp -d) || exit 2
  trap 'rm -rf "$tmp"' EXIT
  fails=0
  make_clean_tree() {  # a tree with only allowed includes, some of them close to the rules
    rm -rf "$tmp/t" && mkdir -p "$tmp/t/engine/include/pixtral" "$tmp/t/engine/src/cuda" "$tmp/t/app/documents"
    printf '#include <vector>\n#include "pixtral/status.h"\n#include <span>\n' >"$tmp/t/engine/include/pixtral/model.h"
    printf '#include "quant.h"\n#include <cuda_runtime.h>\n#include "common.cuh"\n' >"$tmp/t/engine/src/cuda/ops.cu"
    printf '#include <quadmath.h>\n#include <cstdio>\n' >"$tmp/t/engine/src/cuda/quant.h"
    printf 'add_library(pixtral_core STATIC x.cpp)\n' >"$tmp/t/engine/CMakeLists.txt"
    printf '#include <QImage>\n#include <QtGui/QPainter>\n#include "documents/page.h"\n' >"$tmp/t/app/documents/doc.cpp"
    printf '#include <QApplication>\n#include <QtWidgets/QMainWindow>\n' >"$tmp/t/app/main.cpp"
  }
  expect() {  # expect <pass|fail> <what> [planted file] [content]
    local want=$1 what=$2 out rc
    make_clean_tree
    if [ $# -ge 4 ]; then mkdir -p "$(dirname "$tmp/t/$3")"; printf '%s\n' "$4" >>"$tmp/t/$3"; fi
    out=$(check_tree "$tmp/t"); rc=$?
    if { [ "$want" = pass ] && [ $rc -eq 0 ]; } || { [ "$want" = fail ] && [ $rc -ne 0 ] && [[ $out == *"${3:-}"* ]]; }; then
      echo "self-check ok: $what"
    else
      echo "SELF-CHECK FAILED: $what (wanted $want, got $rc violations) ${out}"; fails=$((fails + 1))
    fi
  }
  expect pass "clean tree (allowed includes near the rules)"
  expect fail "engine source includes <QString>" engine/src/core/log.cpp '#include <QString>'
  expect fail "engine header includes <QtCore/qglobal.h>" engine/src/io/x.h '#  include <QtCore/qglobal.h>'
  expect fail "engine CMake links Qt6::Core" engine/src/io/CMakeLists.txt 'target_link_libraries(x Qt6::Core)'
  expect fail "public header includes <cuda_runtime.h>" engine/include/pixtral/session.h '#include <cuda_runtime.h>'
  expect fail "public header includes <cuda_bf16.h>" engine/include/pixtral/tensor.h '#include <cuda_bf16.h>'
  expect fail "public header includes a .cuh" engine/include/pixtral/x.h '#include "../../src/cuda/common.cuh"'
  expect fail "app source includes <QWidget>" app/chat/controller.cpp '#include <QWidget>'
  expect fail "app header includes <QtWidgets/QLabel>" app/chat/m.h '#include <QtWidgets/QLabel>'
  expect fail "app source includes <QtWidgets>" app/storage/s.cpp '#include <QtWidgets>'
  if [ -n "$qt_headers" ]; then
    expect fail "engine includes lowercase <qstring.h>" engine/src/text/t.cpp '#include <qstring.h>'
    expect fail "app includes lowercase <qwidget.h>" app/x/y.cpp '#include <qwidget.h>'
  fi
  out=$(check_links "Qt6::Core;pixtral_engine") && echo "self-check ok: links without Widgets pass" ||
    { echo "SELF-CHECK FAILED: links without Widgets: $out"; fails=$((fails + 1)); }
  out=$(check_links "Qt6::Core;Qt6::Widgets") && { echo "SELF-CHECK FAILED: Qt6::Widgets link not caught"; fails=$((fails + 1)); } ||
    echo "self-check ok: quire_app linking Qt6::Widgets fails"
  echo "layering self-check: $fails failure(s)"
  exit $((fails > 0))
fi

[ -n "$root" ] || { echo "usage: $0 --root SRC | --self-check" >&2; exit 2; }
violations=0
out=$(check_tree "$root") || violations=$?
[ -n "$out" ] && printf '%s\n' "$out"
if [ -n "$app_links" ]; then
  lout=$(check_links "$app_links") || { violations=$((violations + $?)); printf '%s\n' "$lout"; }
fi
if [ $violations -ne 0 ]; then
  echo "layering: $violations violation(s); see docs/architecture.md 'Layers and targets'"
  exit 1
fi
echo "layering: ok (engine Qt-free, public engine headers CUDA-free, quire_app widget-free)"
