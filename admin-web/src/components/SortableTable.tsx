// A table sorted by clicking its column headers: each header is a button, the sorted column says
// so with aria-sort, and a second click reverses the order.

import { useMemo, useState, type ReactNode } from 'react';

export interface Column<R> {
  key: string;
  label: string;
  /** What the column sorts by. */
  value: (row: R) => number | string;
  render?: (row: R) => ReactNode;
  numeric?: boolean;
  /** The row header (the first column, usually). */
  rowHeader?: boolean;
  /** The footer cell (e.g. the total). */
  footer?: ReactNode;
}

export type SortDirection = 'ascending' | 'descending';

interface Props<R> {
  id: string;
  caption: string;
  columns: Column<R>[];
  rows: R[];
  rowKey: (row: R) => string;
  initialSort: { key: string; direction: SortDirection };
}

export function sortRows<R>(rows: R[], column: Column<R>, direction: SortDirection): R[] {
  const sign = direction === 'ascending' ? 1 : -1;
  return [...rows].sort((a, b) => {
    const x = column.value(a);
    const y = column.value(b);
    const order = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return sign * order;
  });
}

export function SortableTable<R>({ id, caption, columns, rows, rowKey, initialSort }: Props<R>) {
  const [sort, setSort] = useState(initialSort);
  const column = columns.find((c) => c.key === sort.key) ?? columns[0];
  const sorted = useMemo(() => sortRows(rows, column, sort.direction), [rows, column, sort.direction]);
  const hasFooter = columns.some((c) => c.footer !== undefined);

  function sortBy(c: Column<R>) {
    setSort((s) =>
      s.key === c.key
        ? { key: c.key, direction: s.direction === 'ascending' ? 'descending' : 'ascending' }
        : // Numbers start with the largest, names from A.
          { key: c.key, direction: c.numeric ? 'descending' : 'ascending' },
    );
  }

  return (
    <div className="table-wrap">
      <table className="table responsive sortable" id={id}>
        <caption className="sr-only">
          {caption}, sorted by {column.label} ({sort.direction}). Click a column header to sort by it.
        </caption>
        <thead>
          <tr>
            {columns.map((c) => {
              const active = c.key === column.key;
              return (
                <th
                  key={c.key}
                  scope="col"
                  className={c.numeric ? 'num' : undefined}
                  aria-sort={active ? sort.direction : 'none'}
                >
                  <button type="button" className="sort-button" onClick={() => sortBy(c)}>
                    {c.label}
                    <span className={`sort-icon${active ? ' sort-active' : ''}`} aria-hidden="true">
                      {active ? (sort.direction === 'ascending' ? '▲' : '▼') : '↕'}
                    </span>
                  </button>
                </th>
              );
            })}
          </tr>
        </thead>
        <tbody>
          {sorted.map((row) => (
            <tr key={rowKey(row)}>
              {columns.map((c) => {
                const content = c.render ? c.render(row) : c.value(row);
                return c.rowHeader ? (
                  <th key={c.key} scope="row" data-label={c.label}>
                    {content}
                  </th>
                ) : (
                  <td key={c.key} data-label={c.label} className={c.numeric ? 'num' : undefined}>
                    {content}
                  </td>
                );
              })}
            </tr>
          ))}
        </tbody>
        {hasFooter ? (
          <tfoot>
            <tr>
              {columns.map((c) =>
                c.rowHeader ? (
                  <th key={c.key} scope="row" data-label={c.label}>
                    {c.footer}
                  </th>
                ) : (
                  <td key={c.key} data-label={c.label} className={c.numeric ? 'num' : undefined}>
                    {c.footer}
                  </td>
                ),
              )}
            </tr>
          </tfoot>
        ) : null}
      </table>
    </div>
  );
}
