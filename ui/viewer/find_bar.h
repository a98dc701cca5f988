// SPDX-License-Identifier: GPL-3.0-or-later
// FindBar: the Ctrl+F bar under a document — a search field, previous/next, a "n of m" label and close.
// It only collects input and shows counts; DocumentTab runs the search (TextSearch) and moves between hits.
#pragma once

#include <QWidget>

class QLabel;
class QLineEdit;
class QToolButton;

namespace quire {

class FindBar : public QWidget {
  Q_OBJECT

 public:
  explicit FindBar(QWidget* parent = nullptr);

  QString text() const;
  /// Shows the bar and focuses the field with its text selected.
  void activate();
  /// "n of m", "No matches", "Searching…" or nothing.
  void setStatus(int current, int total, bool searching);

 Q_SIGNALS:
  void searchRequested(const QString& text);
  void nextRequested();
  void previousRequested();
  void closed();

 protected:
  void keyPressEvent(class QKeyEvent* event) override;

 private:
  QLineEdit* m_field;
  QToolButton* m_previous;
  QToolButton* m_next;
  QToolButton* m_close;
  QLabel* m_status;
};

}  // namespace quire
